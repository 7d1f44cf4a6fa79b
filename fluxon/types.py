"""Names for the shapes that cross boundaries between Fluxon's roles.

Kept in one small module (as Starlette's ``types.py``) so signatures read as the
protocol does: a ROUTER hands us a :data:`RoutingId`, a message is a list of
:data:`Frames`, a client picks a :data:`RequestId`, the broker a :data:`JobId`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import zmq

__all__ = ["RoutingId", "RequestId", "JobId", "Body", "Frame", "Frames", "JSONObject", "LOG_LEVELS"]

#: The identity a ROUTER socket prepends to every message from a peer.
RoutingId = bytes
#: Client-chosen id of one request, unique per client socket (u64 on the wire).
RequestId = int
#: Broker-chosen id of one dispatched job, unique per broker run (u64 on the wire).
JobId = int
#: An opaque body: inline bytes, or a zero-copy frame for a large body.
Body = Union[bytes, memoryview, zmq.Frame]
#: One frame as handed to or received from pyzmq.
Frame = Union[bytes, memoryview, zmq.Frame]
#: A message without its ROUTER envelope: the header frame and an optional body frame.
Frames = Sequence[Frame]
#: A decoded JSON object (session context, READY info, control arguments and results).
JSONObject = dict[str, Any]
#: The log-level names every command accepts (`--log-level`, the console's `log-level`, the control socket).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
