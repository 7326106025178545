"""The simulated network: per-link latency, loss, duplication, partitions (symmetric and
one-way), clogged links, extra latency and extra loss by message type, and faults triggered by
the traffic itself (`on_message`), all drawn from the simulation's one `random.Random`.

Reordering is not a separate knob: every copy of a message gets its own latency, so messages on
one link overtake each other whenever the latency spread allows it. With `random_order` there is
no latency at all: any message in flight may be delivered next, chosen by the seeded generator,
and virtual time moves only between deliveries (timers, `ms_per_delivery`), which explores
message orders far from what a latency distribution makes likely.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Node = Any  # a replica id (int) or a client key (bytes)


@dataclass(frozen=True)
class NetworkProfile:
    """The faults of a network, in documented ranges (see `NetworkProfile.draw`).

    Latency is uniform in [latency_ms_min, latency_ms_max] per message; `loss` and
    `duplication` are per-message probabilities.

    `random_order`: no latency; every message sent joins the messages in flight, and the next
    one delivered is drawn uniformly from them all by the seeded generator. No virtual time
    passes while messages are in flight, unless `ms_per_delivery` says each delivery takes that
    long (a crude latency, so that timers can fire in the middle of a burst). Loss, duplication,
    partitions and `lose` rules apply as with latency; `clog` and `slow_down`, which are about
    arrival times, do not exist in this mode.

    Raises ValueError for a negative `ms_per_delivery`, or one without `random_order`.
    """

    latency_ms_min: float = 1.0
    latency_ms_max: float = 5.0
    loss: float = 0.0
    duplication: float = 0.0
    random_order: bool = False
    ms_per_delivery: float = 0.0

    def __post_init__(self) -> None:
        if self.ms_per_delivery < 0:
            raise ValueError(f"ms_per_delivery must not be negative, got {self.ms_per_delivery!r}")
        if self.ms_per_delivery and not self.random_order:
            raise ValueError("ms_per_delivery applies to random_order only (latency sets the "
                             "time of each delivery otherwise)")

    #: Ranges that swarm testing draws from: wide enough to hurt, narrow enough that the
    #: liveness bound of the checkers still holds once faults heal.
    RANGES = {
        "latency_ms_min": (0.1, 5.0),
        "latency_ms_spread": (0.0, 50.0),
        "loss": (0.0, 0.2),
        "duplication": (0.0, 0.2),
    }

    @classmethod
    def draw(cls, rng: random.Random) -> "NetworkProfile":
        """A profile drawn from `RANGES` (swarm testing: each seed gets its own mix)."""
        low = rng.uniform(*cls.RANGES["latency_ms_min"])
        spread = rng.uniform(*cls.RANGES["latency_ms_spread"])
        # Half of the seeds get a clean network in each dimension, so faults appear alone too.
        loss = rng.uniform(*cls.RANGES["loss"]) if rng.random() < 0.5 else 0.0
        duplication = rng.uniform(*cls.RANGES["duplication"]) if rng.random() < 0.5 else 0.0
        return cls(low, low + spread, loss, duplication)


@dataclass
class _Link:
    #: The partitions that block this link (it is blocked while any does).
    blocked_by: set = field(default_factory=set)
    clogged_until_us: int = 0

    @property
    def blocked(self) -> bool:
        return bool(self.blocked_by)


@dataclass(frozen=True, eq=False)
class Partition:
    """A handle on one `Network.partition` call: `Network.heal(partition)` lifts it alone.
    Compared by identity: two calls with the same groups are two partitions."""

    links: frozenset[tuple[Node, Node]]


@dataclass(frozen=True)
class _Slowdown:
    """Extra latency, uniform in [low_us, high_us], for one message type to some destinations."""

    destinations: frozenset | None
    low_us: float
    high_us: float


@dataclass(frozen=True)
class _Loss:
    """Extra loss, with probability `probability`, for one message type to some destinations."""

    destinations: frozenset | None
    probability: float


@dataclass
class _Trigger:
    """`on_message`: run `action` when `source` has sent its `count`-th message of `kind`."""

    kind: type
    source: Any
    count: int
    action: Callable[[Any], None]
    seen: int = 0


@dataclass
class Network:
    """Decides, for each message sent, how many copies arrive and when."""

    rng: random.Random
    profile: NetworkProfile = field(default_factory=NetworkProfile)
    _links: dict[tuple[Node, Node], _Link] = field(default_factory=dict)
    #: While False, loss and duplication are suspended (after the last fault heals).
    faulty: bool = True
    #: Extra latency by message type (`slow_down`).
    _slowdowns: dict[type, _Slowdown] = field(default_factory=dict)
    #: Extra loss by message type (`lose`).
    _losses: dict[type, _Loss] = field(default_factory=dict)
    #: Armed event triggers (`on_message`), in the order they were armed.
    _triggers: list[_Trigger] = field(default_factory=list)
    #: Copies dropped by `lose` rules, by message type name (what the rules really did).
    lost_by_type: dict[str, int] = field(default_factory=dict)

    def _link(self, source: Node, destination: Node) -> _Link:
        link = self._links.get((source, destination))
        if link is None:
            link = self._links[(source, destination)] = _Link()
        return link

    def plain_latency_us(self) -> tuple[float, float] | None:
        """(low, spread) in µs when every message's fate is only a latency drawn uniformly from
        low + spread * random() (no partition, clog, loss or duplication in force): the driver
        may then draw it itself, consuming the generator exactly as `arrivals_us` would.
        None when `arrivals_us` must decide."""
        profile = self.profile
        if self._links or self._slowdowns or self._losses or self._triggers \
                or profile.random_order:
            return None
        if self.faulty and (profile.loss or profile.duplication):
            return None
        low = profile.latency_ms_min * 1000
        return low, profile.latency_ms_max * 1000 - low

    def lossless(self) -> bool:
        """Whether every message sent now arrives exactly once (no partition, clog, loss rule,
        loss or duplication in force): `copies` would return 1 without drawing."""
        profile = self.profile
        return not (self._links or self._losses
                    or (self.faulty and (profile.loss or profile.duplication)))

    def copies(self, source: Node, destination: Node, message: Any = None) -> int:
        """How many copies of `message` arrive: 0 if it is blocked by a partition or lost (to
        the profile's loss or a `lose` rule), 2 if duplicated, else 1."""
        link = self._links.get((source, destination))
        if link is not None and link.blocked:
            return 0
        profile = self.profile
        rng = self.rng
        if self.faulty and profile.loss and rng.random() < profile.loss:
            return 0
        if self._losses:
            loss = self._losses.get(type(message))
            if loss is not None and (loss.destinations is None
                                     or destination in loss.destinations) \
                    and rng.random() < loss.probability:
                name = type(message).__name__
                self.lost_by_type[name] = self.lost_by_type.get(name, 0) + 1
                return 0
        return 2 if self.faulty and profile.duplication and rng.random() < profile.duplication else 1

    def arrivals_us(self, source: Node, destination: Node, now_us: int,
                    message: Any = None) -> list[int]:
        """Arrival times of the copies of `message` (empty if it is lost or blocked)."""
        copies = self.copies(source, destination, message)
        if not copies:
            return []
        link = self._links.get((source, destination))
        rng = self.rng
        profile = self.profile
        start = now_us if link is None else max(now_us, link.clogged_until_us)
        low, high = profile.latency_ms_min * 1000, profile.latency_ms_max * 1000
        slowdown = self._slowdowns.get(type(message)) if self._slowdowns else None
        if slowdown is not None and (slowdown.destinations is None
                                     or destination in slowdown.destinations):
            return [start + int(rng.uniform(low, high))
                    + int(rng.uniform(slowdown.low_us, slowdown.high_us)) for _ in range(copies)]
        return [start + int(rng.uniform(low, high)) for _ in range(copies)]

    # ------------------------------------------------------------------ faults

    def partition(self, group_a: list[Node], group_b: list[Node],
                  one_way: bool = False) -> Partition:
        """Block links from group_a to group_b (and back, unless `one_way`). Returns a handle
        for `heal(partition)`; a link blocked by several partitions stays blocked until each
        is healed (or everything is, by `heal()`)."""
        links = {(a, b) for a in group_a for b in group_b}
        if not one_way:
            links |= {(b, a) for a, b in links}
        partition = Partition(frozenset(links))
        for source, destination in partition.links:
            self._link(source, destination).blocked_by.add(partition)
        return partition

    def isolate(self, node: Node, others: list[Node]) -> Partition:
        return self.partition([node], [o for o in others if o != node])

    def clog(self, source: Node, destination: Node, until_us: int) -> None:
        """Hold every message on one link until `until_us` (then they arrive in a burst).
        Raises ValueError on a `random_order` network (no arrival times to hold)."""
        self._needs_latency("clog")
        link = self._link(source, destination)
        link.clogged_until_us = max(link.clogged_until_us, until_us)

    def slow_down(self, kind: type, low_ms: float, high_ms: float,
                  destinations: list[Node] | None = None) -> None:
        """Deliver every message of type `kind` (to `destinations`, default everyone) between
        `low_ms` and `high_ms` later than its latency would: e.g. CHECKPOINTs that arrive late
        at some replicas (a slow path, a busy receiver). Replaces an earlier rule for `kind`.
        Raises ValueError unless 0 <= low_ms <= high_ms, or on a `random_order` network."""
        self._needs_latency("slow_down")
        if not 0 <= low_ms <= high_ms:
            raise ValueError(f"need 0 <= low_ms <= high_ms, got {low_ms!r}, {high_ms!r}")
        self._slowdowns[kind] = _Slowdown(
            None if destinations is None else frozenset(destinations), low_ms * 1000,
            high_ms * 1000)

    def _needs_latency(self, what: str) -> None:
        if self.profile.random_order:
            raise ValueError(f"{what} needs a network with latency; with random_order no "
                             "message has an arrival time")

    def lose(self, kind: type, probability: float,
             destinations: list[Node] | None = None) -> None:
        """Lose each copy of a message of type `kind` (to `destinations`, default everyone) with
        probability `probability`, on top of the profile's loss: e.g. COMMITs that rarely
        reach one replica. Drawn from the network's generator; each copy lost this way is
        counted in `lost_by_type`. Replaces an earlier rule for `kind`; `heal()` removes it.
        Raises ValueError unless 0 <= probability <= 1."""
        if not 0 <= probability <= 1:
            raise ValueError(f"need 0 <= probability <= 1, got {probability!r}")
        self._losses[kind] = _Loss(
            None if destinations is None else frozenset(destinations), probability)

    def on_message(self, kind: type, source: Node, count: int,
                   action: Callable[[Any], None]) -> None:
        """A fault triggered by an event: when `source` (a replica id or client key; None: any
        sender) has put its `count`-th message of type `kind` on the network (a multicast
        counts once), `action(simulation)` runs, once, at that virtual time right after the
        event that sent it (so that message and the rest of its Ready have left): crash the
        sender, partition it, heal... The action counts as a fault for the liveness clock.
        While a trigger is armed every send is inspected (`Simulation.send` asks `fired`).
        `heal()` does not disarm triggers. Raises ValueError unless `count` >= 1."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count!r}")
        self._triggers.append(_Trigger(kind, source, count, action))

    def fired(self, source: Node, message: Any) -> list[Callable[[Any], None]]:
        """Count `message` (sent by `source`) against the armed triggers; return the actions
        of those it fires, and disarm them."""
        fired = []
        for trigger in self._triggers:
            if type(message) is trigger.kind and trigger.source in (None, source):
                trigger.seen += 1
                if trigger.seen == trigger.count:
                    fired.append(trigger)
        for trigger in fired:
            self._triggers.remove(trigger)
        return [trigger.action for trigger in fired]

    @property
    def triggers_armed(self) -> int:
        """How many `on_message` triggers have not fired yet."""
        return len(self._triggers)

    def heal(self, partition: Partition | None = None) -> None:
        """Without an argument: remove every partition, clog, slowdown and `lose` rule; loss
        and duplication stop too (armed `on_message` triggers stay). With `partition` (what
        `partition` or `isolate` returned): lift that one partition only; other partitions,
        clogs, slowdowns, losses and duplication stay, and healing it a second time changes
        nothing."""
        if partition is None:
            self._links.clear()
            self._slowdowns.clear()
            self._losses.clear()
            self.faulty = False
            return
        for key in partition.links:
            link = self._links.get(key)
            if link is None:
                continue
            link.blocked_by.discard(partition)
            if not link.blocked_by and not link.clogged_until_us:
                # An idle link record would keep `plain_latency_us` off the fast path.
                del self._links[key]
