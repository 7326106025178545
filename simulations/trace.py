"""The trace of a simulation: every delivery (and every drop the engine decides), hashed as the
run goes, so that the hash printed with a run proves that the same code and seed gave the same
run. Events are plain tuples (ints, str, bytes) hashed in chunks, packed canonically:
deterministic, unlike hash(), and cheaper than hashing each event's repr (this is on the
hot path of every delivery)."""

from __future__ import annotations

import hashlib
from typing import Any

from pbft.codec import packb_canonical

#: Events are hashed this many at a time.
CHUNK = 4096


class Trace:
    """The running hash of a simulation's events. The engine appends to `events` directly on
    its hot path (then calls `flush_if_full`); `event` does the same for anything else."""

    __slots__ = ("_hash", "events")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.events: list[tuple] = []

    def event(self, now_us: int, source: Any, destination: Any, what: Any) -> None:
        """Record that `what` (a message, or a bytes tag such as b"undecodable") passed from
        `source` to `destination` at `now_us`; client keys are shortened to 6 bytes."""
        self.events.append((now_us, source if type(source) is int else source[:6],
                            destination if type(destination) is int else destination[:6],
                            type(what).__name__, getattr(what, "view", -1),
                            getattr(what, "sequence", -1)))
        self.flush_if_full()

    def flush_if_full(self) -> None:
        if len(self.events) >= CHUNK:
            self._hash.update(packb_canonical(self.events))
            self.events.clear()

    def hexdigest(self) -> str:
        """The hash of every event so far (16 hex digits)."""
        running = self._hash.copy()
        running.update(packb_canonical(self.events))
        return running.hexdigest()[:16]
