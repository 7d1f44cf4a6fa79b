"""Small applications the worker, client and end-to-end tests run."""
