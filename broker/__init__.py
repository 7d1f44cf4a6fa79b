"""The broker role (imported as ``fluxon.broker``): routes client requests to workers.

``Broker(BrokerConfig(...)).run()`` serves until ``stop()``; ``fluxon broker`` is the CLI.
"""

from fluxon.broker.config import BrokerConfig
from fluxon.broker.control import send_control_command
from fluxon.broker.core import Broker

__all__ = ["Broker", "BrokerConfig", "send_control_command"]
