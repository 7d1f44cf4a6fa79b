"""The broker role (imported as ``fluxon.broker``)."""
