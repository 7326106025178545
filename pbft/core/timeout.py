"""One timer of the replica: a deadline on the time `tick(now_ms)` gives, or none.

A `Timeout` fires nothing by itself. The replica keeps one table of (timeout, handler) and its
`tick()` runs, in table order, the handler of every timeout that has fired (as TigerBeetle's
replica does); a handler restarts or stops its timeout as the protocol says. A timeout that
has fired and is not restarted stays fired: its handler runs again at every tick.
"""

from __future__ import annotations


class Timeout:
    """A deadline in ms, or None when stopped."""

    __slots__ = ("deadline_ms",)

    def __init__(self) -> None:
        self.deadline_ms: int | None = None

    def start(self, now_ms: int, after_ms: int) -> None:
        """(Re)start: fire at `now_ms + after_ms`. Raises ValueError if `after_ms` < 0."""
        if after_ms < 0:
            raise ValueError(f"a timeout cannot fire {after_ms} ms in the past")
        self.deadline_ms = now_ms + after_ms

    def stop(self) -> None:
        self.deadline_ms = None

    @property
    def running(self) -> bool:
        return self.deadline_ms is not None

    def fired(self, now_ms: int) -> bool:
        """Whether it runs and its deadline is at or before `now_ms`."""
        deadline_ms = self.deadline_ms
        return deadline_ms is not None and now_ms >= deadline_ms

    def __repr__(self) -> str:
        return f"Timeout(deadline_ms={self.deadline_ms})"
