"""The broker role (imported as ``fluxon.broker``): routes client requests to workers.

``Broker(BrokerConfig(...)).run()`` serves until ``stop()``; ``fluxon broker`` is the CLI.
``BrokerConfig(limits=BrokerLimits(...))`` sets the budgets against hostile input.
"""

from fluxon.broker.config import BrokerConfig
from fluxon.broker.control import send_control_command
from fluxon.broker.core import Broker
from fluxon.broker.limits import BrokerLimits

__all__ = ["Broker", "BrokerConfig", "BrokerLimits", "send_control_command"]
