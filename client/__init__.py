"""The client library (imported as ``fluxon.client``)."""
