"""Example applications built with Fluxon (run them from the repository root with ``python3 -m``)."""
