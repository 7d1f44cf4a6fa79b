"""The worker role (imported as ``fluxon.worker``): runs an application's views for a broker.

``fluxon worker package.module:router --connect tcp://HOST:8081`` or, from Python::

    from fluxon.worker import Worker, WorkerConfig
    Worker(router, WorkerConfig(connect="tcp://127.0.0.1:8081", keys=None)).run()
"""

from fluxon.worker.core import Worker, WorkerConfig, keys_for, open_database
from fluxon.worker.execution import Outcome, ViewRunner
from fluxon.worker.supervisor import Supervisor

__all__ = ["Worker", "WorkerConfig", "keys_for", "open_database", "Outcome", "ViewRunner", "Supervisor"]
