"""The worker role (imported as ``fluxon.worker``)."""
