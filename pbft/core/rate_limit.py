"""Per-peer rate limits for the requests that make a replica work for a peer (S1'').

A replica answers FETCH-STATE, FETCH-LOG and old VIEW-CHANGEs (with its NEW-VIEW) on behalf of
whoever asks; without a limit, one Byzantine replica asking in a loop makes it serve without
bound. Each limit is a token bucket per peer, in integer arithmetic over the time `tick` gives.
"""

from __future__ import annotations


class RateLimit:
    """One token bucket per peer: a peer may make `burst` requests at once, and `rate` more
    per `period_ms` after that. A peer never seen has a full bucket.

    Memory: one entry per peer that ever asked; callers key it by replica id (0 .. n - 1),
    checked before `allow`, so it holds at most n entries.
    """

    __slots__ = ("_rate", "_period_ms", "_capacity", "_buckets")

    def __init__(self, rate: int, period_ms: int, burst: int) -> None:
        if rate < 1 or period_ms < 1 or burst < 1:
            raise ValueError(f"rate {rate}, period {period_ms} ms and burst {burst} must be >= 1")
        self._rate = rate
        self._period_ms = period_ms
        # Levels are kept in token-milliseconds (tokens × period_ms): refilling `rate` tokens
        # per `period_ms` is then `rate` per millisecond, exactly, in integers.
        self._capacity = burst * period_ms
        #: Per peer: (level in token-ms, when it was last updated).
        self._buckets: dict[int, tuple[int, int]] = {}

    def allow(self, peer: int, now_ms: int) -> bool:
        """Whether `peer` may have one more request answered at `now_ms` (and if so, count it).
        `now_ms` must not go backwards between calls (the replica's clock never does)."""
        level, at_ms = self._buckets.get(peer, (self._capacity, now_ms))
        level = min(self._capacity, level + (now_ms - at_ms) * self._rate)
        if level < self._period_ms:
            self._buckets[peer] = (level, now_ms)
            return False
        self._buckets[peer] = (level - self._period_ms, now_ms)
        return True
