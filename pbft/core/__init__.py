"""The PBFT core: pure, synchronous, deterministic (docs/ARCHITECTURE.md).

No I/O, no clock, no randomness: time arrives through `tick(now_ms)`, messages through
`receive(message)`, and all work leaves through `ready()` / `advance()`.
"""

from .client import ClientReady, ClientResult, ClientSession
from .mode import Mode
from .ready import ExecutedBatch, ExecutedRequest, Outbound, Ready, Status
from .replica import Replica

__all__ = [
    "ClientReady",
    "ClientResult",
    "ClientSession",
    "ExecutedBatch",
    "ExecutedRequest",
    "Mode",
    "Outbound",
    "Ready",
    "Replica",
    "Status",
]
