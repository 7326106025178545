"""The deterministic simulator's event loop: a single-threaded discrete-event loop over virtual
time that drives real `pbft.core` replicas and client sessions through a faulty simulated
network. Its parts live beside it: the network (`network`), the clients and their workloads
(`clients`), keys (`keys`), durable records (`storage`), what the replicas executed and voted
(`history`), the trace hash (`trace`), what a run found (`results`), and the evidence of each
step (`evidence`).

One seeded `random.Random` is the only source of randomness, virtual time the only clock, and a
heap of (time, sequence, event) the only scheduler; so the same code and seed give the same run,
and the trace hash printed with every run proves it. On a `random_order` network (see
`NetworkProfile`) messages in flight are not on the heap: they wait in a pool, and whenever the
pool is not empty the next event is the delivery of one of them, drawn by the generator.

Two ways to drive it: `run()` plays a whole scenario (closed-loop clients, scheduled faults, then
the checkers judge it); tests that build a situation step by step use `submit`, `inject`,
`deliver_one`, `deliver_all`, `advance_time`, `run_for`, `run_until` and `run_workload`.
"""

from __future__ import annotations

import gc
import heapq
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pbft.app import StateMachine
from pbft.codec import TAGS, DecodeError, Limits, decode, encode
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.core import ClientResult, ClientSession, ExecutedBatch, Replica
from pbft.crypto import Signer, Verifier
from pbft.ed25519 import Ed25519Verifier
from pbft.core.sizes import message_bytes
from pbft.messages import LoggedBatch, PrePrepare, Reply, Request

from .clients import (
    ClientRecord,
    MakeOperation,
    RequestMarks,
    SimClient,
)
from .evidence import Evidence
from .history import History
from .keys import InsecureSigner, InsecureVerifier, ed25519_signer
from .network import Network, NetworkProfile
from .storage import SimulatedStorage
from .trace import CHUNK, Trace

_DELIVER, _TICK, _ACTION, _CLIENT = 0, 1, 2, 3

#: The cyclic garbage collector's young-generation threshold while a simulation runs. Every
#: delivery allocates a few short-lived container objects (heap entries, trace events, votes)
#: that reference counting frees, yet each counts towards a collection; at CPython's default of
#: 700 the collector runs every ~200 deliveries and walks the young objects for nothing, about
#: 8% of a run (benchmarks/simulator_speed.py). Garbage in cycles is still collected, later.
_GC_YOUNG_THRESHOLD = 10_000


@contextmanager
def _young_collections_relaxed() -> Iterator[None]:
    """Raise the collector's first threshold for the duration (never lower it, and leave a
    threshold of 0, automatic collection off, alone), then restore the thresholds."""
    thresholds = gc.get_threshold()
    if 0 < thresholds[0] < _GC_YOUNG_THRESHOLD:
        gc.set_threshold(_GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


#: Per pbft message type: its name in the trace, and whether it has a view and a sequence
#: number (so that the trace needs no `getattr` with a default, which is slow when it misses).
_TRACE_SHAPES: dict[type, tuple[str, bool, bool]] = {
    kind: (kind.__name__, "view" in kind.__slots__, "sequence" in kind.__slots__)
    for kind in TAGS
}
TICK_MS = 10
#: What a simulation changes in the shipped `ClusterConfig` (unless `config_overrides` says
#: otherwise): short timeouts and frequent checkpoints, so that runs of a few virtual seconds
#: exercise view changes, checkpoints, garbage collection and state transfer.
SIMULATION_CONFIG: dict[str, int] = {
    "request_timeout_ms": 1_000, "view_change_timeout_ms": 2_000,
    "client_retry_timeout_ms": 500, "state_transfer_timeout_ms": 500,
    "checkpoint_interval": 8, "log_window": 32,
}
#: After the last scheduled action and the last client, replicas get this long to catch up.
SETTLE_US = 1_000_000

#: The messages that carry a batch: the only ones whose size grows with what clients send (config
#: validation bounds every other message a correct replica builds), so the only ones the engine
#: measures against `frame_bytes_max` (see `Simulation.send`).
_BATCH_CARRIERS = frozenset((PrePrepare, LoggedBatch))


class Observer:
    """What `Simulation.observer` is told, each call before the engine acts on it: a message
    about to be delivered (to a replica that may be down, or a client); a running replica about
    to tick; a Ready whose messages a replica is about to send (also while restarting; not one
    it dies writing before it could send); a result a client accepted.
    The base class ignores everything. An observer must not draw from the simulation's
    generator nor change the run (or the same seed would give another run)."""

    def delivering(self, source: Any, destination: Any, message: Any) -> None:
        pass

    def ticking(self, replica_id: int, now_ms: int) -> None:
        pass

    def readied(self, replica_id: int, ready: Any) -> None:
        pass

    def client_result(self, client: "SimClient", result: ClientResult) -> None:
        pass


class ChainedObserver(Observer):
    """An observer added to a simulation that may have one already: `install` puts it in
    front of that one (`inner`), and every call a subclass does not override, or passes on
    with `super()`, reaches it unchanged."""

    sim: "Simulation | None" = None
    inner: Observer | None = None

    def install(self, sim: "Simulation") -> "ChainedObserver":
        self.sim, self.inner = sim, sim.observer
        sim.observer = self
        return self

    def delivering(self, source: Any, destination: Any, message: Any) -> None:
        if self.inner is not None:
            self.inner.delivering(source, destination, message)

    def ticking(self, replica_id: int, now_ms: int) -> None:
        if self.inner is not None:
            self.inner.ticking(replica_id, now_ms)

    def readied(self, replica_id: int, ready: Any) -> None:
        if self.inner is not None:
            self.inner.readied(replica_id, ready)

    def client_result(self, client: "SimClient", result: ClientResult) -> None:
        if self.inner is not None:
            self.inner.client_result(client, result)


class Simulation:
    """One run of n replicas and some clients. Build it, schedule faults with `at()`, `run()`.

    `replica_class` may be a deliberately broken subclass (to test the checkers);
    `behaviours` maps replica ids to Byzantine interceptors (`simulations.byzantine`).
    The configuration is the shipped `ClusterConfig` changed by `SIMULATION_CONFIG` (or not,
    with `shipped_config`) and then by `config_overrides`. `compact_storage` False keeps every
    record each replica persisted in `storages` (the full stream, for tests that replay it);
    by default records below the stable checkpoint are dropped, as the runtime's storage does.
    `admit_clients` (N8'): False, open admission (the configuration lists no clients); True,
    the configuration lists the keys of the `clients` built here; names, those and the keys of
    these names too (for clients added later under them, e.g. by `add_byzantine_client`).
    Client keys derive from names, so they are known before the configuration is built.
    """

    def __init__(
        self,
        *,
        seed: int,
        replicas: int = 4,
        clients: int = 4,
        requests_per_client: int = 40,
        think_ms: float = 50.0,
        make_operation: MakeOperation | None = None,
        app_factory: Callable[[], StateMachine] | None = None,
        network: NetworkProfile | None = None,
        config_overrides: dict[str, Any] | None = None,
        insecure_signatures: bool = True,
        wire: bool = False,
        replica_class: type[Replica] = Replica,
        behaviours: dict[int, Any] | None = None,
        admit_clients: bool | Iterable[str] = False,
        sample_memory_every_ms: float | None = None,
        evidence: bool = True,
        shipped_config: bool = False,
        compact_storage: bool = True,
    ) -> None:
        from pbft.app import KeyValueStore, kv_append

        self.seed = seed
        self.rng = random.Random(seed)
        self.wire = wire
        self.now_us = 0
        self._heap: list[tuple] = []
        self._counter = 0
        #: Every delivery and drop, hashed as the run goes (`trace_hash`).
        self.trace = Trace()
        self.events = 0
        self.deliveries = 0

        make_signer: Callable[[str], Signer] = InsecureSigner if insecure_signatures else ed25519_signer
        self.verifier: Verifier = InsecureVerifier() if insecure_signatures else Ed25519Verifier()
        self.make_signer = make_signer
        self.signers = [make_signer(f"replica-{i}") for i in range(replicas)]
        overrides = {**({} if shipped_config else SIMULATION_CONFIG), **(config_overrides or {})}
        if admit_clients is not False:
            names = [f"client-{c}" for c in range(clients)]
            if admit_clients is not True:
                names += [name for name in admit_clients if name not in names]
            overrides["clients"] = tuple(make_signer(name).public_key for name in names)
        self.config = ClusterConfig(
            replicas=tuple(ReplicaInfo(i, s.public_key) for i, s in enumerate(self.signers)),
            **overrides,
        )
        self.limits = Limits.from_config(self.config)
        self._frame_bytes_max = self.config.frame_bytes_max
        #: Copies of messages dropped because they exceed `frame_bytes_max` (see `send`).
        self.oversized_dropped = 0
        self.app_factory = app_factory or KeyValueStore
        self.replica_class = replica_class
        self.network = Network(self.rng, network or NetworkProfile())
        profile = self.network.profile
        self._random_order = profile.random_order
        #: Messages in flight on a `random_order` network: (destination, source, payload).
        self._pool: list[tuple[Any, Any, Any]] = []
        self._per_delivery_us = int(profile.ms_per_delivery * 1000)
        self._compact_storage = compact_storage
        self.storages = [SimulatedStorage() for _ in range(replicas)]
        self.apps = [self.app_factory() for _ in range(replicas)]
        self.replicas = [
            replica_class(self.config, i, self.signers[i], self.verifier, self.apps[i], 0)
            for i in range(replicas)
        ]
        self.down: set[int] = set()
        #: Replicas that die while persisting their next Ready (True: their next Ready whose
        #: votes may leave before they are durable, `Ready.durable_first` False).
        self._torn_next: dict[int, bool] = {}
        #: `crash_at_write`: replica -> (record type, how many more Readies holding one).
        self._write_crashes: dict[int, tuple[type, int]] = {}
        #: (replica, record type name, virtual µs) for every death at a named write.
        self.writes_crashed: list[tuple[int, str, int]] = []
        self._compacted = [0] * replicas
        #: What each replica executed and, if it has no behaviour, voted (`History`); its
        #: parts are also attributes of the simulation, for the checkers.
        self.history = History(replicas)
        history = self.history
        self.executed = history.executed
        self.executed_at_us = history.executed_at_us
        self.reexecuted_differently = history.reexecuted_differently
        self.votes_sent = history.votes_sent
        self.double_votes = history.double_votes
        self.view_changes_sent = history.view_changes_sent
        #: Memory sampling (`sample_memory`): each replica's largest `Replica.bytes_held()` seen,
        #: and when (virtual ms).
        self.peak_bytes_held: dict[int, int] = {}
        self.peak_bytes_held_at_ms: dict[int, int] = {}
        self._sample_every_us = 0
        self._next_sample_us = 0
        if sample_memory_every_ms is not None:
            self.sample_memory(sample_memory_every_ms)
        #: Replicas restarted with a wiped disk: they forgot their votes (see checkers.single_vote).
        self.wiped: set[int] = set()
        self.behaviours: dict[int, Any] = {}
        #: What each correct replica was delivered and did, checked as it acts
        #: (`simulations.evidence`; None: not recorded).
        self.evidence: Evidence | None = Evidence(self) if evidence else None
        self._on_delivery = self.evidence.on_delivery if evidence else {}
        #: Replicas that are faulty by design (Byzantine, or crashed and never restarted).
        self.faulty: set[int] = set()
        for replica_id, behaviour in (behaviours or {}).items():
            self.add_behaviour(replica_id, behaviour)

        operation = make_operation or (lambda c, i: kv_append(f"key-{c % 3}", b"%d.%d;" % (c, i)))
        self._default_operation = operation
        self.clients: list[SimClient] = []
        #: Keys Byzantine clients made up on the way (each a client of its own to the replicas,
        #: none correct), that the validity checker must not count as strangers.
        self.sybil_keys: set[bytes] = set()
        self._clients_by_key: dict[bytes, SimClient] = {}
        for c in range(clients):
            self.add_client(f"client-{c}", requests_per_client, think_ms, operation)

        #: Clients submit nothing new before this virtual time (`pause_clients`).
        self.clients_paused_until_us = 0
        #: The run stops after this many events (None: no limit), with `runaway` set: a storm
        #: of messages that grows without end must end a sweep's run, not hang it.
        self.events_max: int | None = None
        self.runaway = False
        #: Virtual time (µs) of the last fault; liveness is judged from there.
        self.last_fault_us = 0
        #: The run goes on at least until every scheduled action has happened.
        self.last_action_us = 0
        #: Told of every delivery, every replica tick, every Ready and every client result
        #: (`Observer`, e.g. `simulations.transcript.Transcript`); None, the default, costs one
        #: test per event.
        self.observer: Observer | None = None
        self._schedule(0, _TICK, None, None, None)

    # ------------------------------------------------------------------ set-up

    def add_behaviour(self, replica_id: int, behaviour: Any) -> None:
        from .byzantine import ByzantineContext

        behaviour.attach(ByzantineContext(self, replica_id))
        self.behaviours[replica_id] = behaviour
        self.faulty.add(replica_id)

    def add_client(self, name: str, requests: int = 0, think_ms: float = 0.0,
                   make_operation: MakeOperation | None = None,
                   correct: bool = True) -> SimClient:
        """A closed-loop client `name` submitting `requests` operations made by
        `make_operation` (see `MakeOperation`; default: the simulation's workload), which gets
        a generator of its own derived from the simulation's seed and `name`. With no
        `requests` it waits to be driven (`submit`, `run_workload`)."""
        session = ClientSession(self.config, self.make_signer(name), self.now_us // 1000)
        record = ClientRecord(name, correct)
        rng = random.Random(f"pbft-sim-operations:{self.seed}:{name}")
        client = SimClient(session, record, len(self.clients), requests, think_ms,
                           make_operation or self._default_operation, rng)
        self.clients.append(client)
        self._clients_by_key[session.client] = client
        if requests:
            start_us = self.now_us + int(self.rng.uniform(0, think_ms) * 1000)
            self._schedule(start_us, _CLIENT, client, None, None)
        return client

    def sample_memory(self, every_ms: float) -> None:
        """From the next tick on, every `every_ms` of virtual time, record the `bytes_held()` of
        every running replica in `peak_bytes_held` if it is that replica's largest yet. Off by
        default: `bytes_held` walks the whole log, far too slow for every tick of a sweep.
        Raises ValueError unless `every_ms` is positive."""
        if not every_ms > 0:
            raise ValueError(f"every_ms must be positive, got {every_ms!r}")
        self._sample_every_us = max(1, int(every_ms * 1000))
        self._next_sample_us = self.now_us

    @property
    def samples_memory(self) -> bool:
        return self._sample_every_us > 0

    @property
    def reexecutions(self) -> int:
        """How many executions repeated an earlier one of the same replica exactly."""
        return self.history.reexecutions

    def at(self, ms: float, action: Callable[["Simulation"], None], fault: bool = True) -> None:
        """Run `action(self)` at virtual time `ms`. Faults count for the liveness clock."""
        us = int(ms * 1000)
        self.last_action_us = max(self.last_action_us, us)
        if fault:
            self.last_fault_us = max(self.last_fault_us, us)
        self._schedule(us, _ACTION, action, None, None)

    def pause_clients(self, until_ms: float) -> None:
        """From now on, clients submit nothing new before virtual time `until_ms` (a request
        already outstanding goes on): an idle period. Raises ValueError if `until_ms` is
        negative."""
        if until_ms < 0:
            raise ValueError(f"until_ms must not be negative, got {until_ms!r}")
        self.clients_paused_until_us = max(self.clients_paused_until_us, int(until_ms * 1000))

    # ------------------------------------------------------------------ faults

    def crash(self, replica_id: int, torn: bool = False, after_early_sends: bool = False) -> None:
        """Stop a replica. With `torn`, it dies while persisting its next Ready; with
        `after_early_sends` too, its next Ready that sends votes before they are durable, after
        sending them (the votes are lost from its records, not from the network)."""
        if torn:
            self._torn_next[replica_id] = after_early_sends
        else:
            self.down.add(replica_id)

    def crash_at_write(self, replica_id: int, kind: type, count: int = 1) -> None:
        """A crash at a named write: the replica dies while persisting the `count`-th Ready
        (from now on) that holds a record of type `kind` (e.g. `Commit`: "while writing its
        first COMMIT"). The records of that Ready before the first such record are durable;
        that record and the rest are lost (a torn write); messages the Ready could send before
        its records were durable (`Ready.durable_first` False) have left, the others never do.
        It stays down until `restart`; each death is noted in `writes_crashed`. Replaces an
        earlier `crash_at_write` for that replica. Raises ValueError unless `count` >= 1."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count!r}")
        self._write_crashes[replica_id] = (kind, count)

    def restart(self, replica_id: int, wipe: bool = False) -> Replica:
        """Recover a crashed replica from its durable records (or from nothing, if wiped: it
        must catch up by state transfer, S1); return the new replica."""
        if wipe:
            self.storages[replica_id].wipe()
            self.wiped.add(replica_id)
        self.apps[replica_id] = self.app_factory()
        self.replicas[replica_id] = self.replica_class.recover(
            self.config, replica_id, self.signers[replica_id], self.verifier,
            self.apps[replica_id], list(self.storages[replica_id].records), self.now_us // 1000,
        )
        self.down.discard(replica_id)
        self._torn_next.pop(replica_id, None)
        if self.evidence is not None:
            self.evidence.restarted(replica_id, self.storages[replica_id].records, wipe,
                                    self.replicas[replica_id].stable_checkpoint)
        # What it executed before the crash stays in `executed` (clients may have seen its
        # replies); what it executes again from its snapshot on is checked against that.
        self._flush(replica_id)
        return self.replicas[replica_id]

    # ------------------------------------------------------------------ the loop

    def _schedule(self, at_us: int, kind: int, a: Any, b: Any, c: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at_us, self._counter, kind, a, b, c))

    def run(self, *, until_ms: float = 120_000, liveness_bound_ms: float = 30_000) -> bool:
        """Run until every client is done, or virtual time reaches `until_ms` (or the liveness
        bound after the last fault). Returns True if every correct client finished."""
        with _young_collections_relaxed():
            self._run(int(until_ms * 1000), int(liveness_bound_ms * 1000), True, None)
        return self.all_done()

    def _run(self, until_us: float, bound_us: float, stop_when_done: bool,
             condition: Callable[[], bool] | None) -> None:
        """The event loop: run events until the next is later than `until_us` or than the
        liveness bound after the last fault, or the event limit is reached (`runaway`), or (with
        `stop_when_done`) every client is done and the run has settled, or `condition()`
        holds after an event."""
        if self._random_order:
            self._run_random(until_us, bound_us, stop_when_done, condition)
            return
        heap = self._heap
        pop = heapq.heappop
        deliver = self._deliver
        events_max = self.events_max if self.events_max is not None else float("inf")
        while heap:
            at_us, _, kind, a, b, c = pop(heap)
            if at_us > until_us or at_us > self.last_fault_us + bound_us:
                heapq.heappush(heap, (at_us, 0, kind, a, b, c))
                break
            if self.events >= events_max:
                heapq.heappush(heap, (at_us, 0, kind, a, b, c))
                self.runaway = True
                break
            self.now_us = at_us
            self.events += 1
            if kind == _DELIVER:
                deliver(a, b, c)
            elif kind == _TICK:
                self._tick()
                if stop_when_done and self.all_done() and at_us >= self.last_action_us + SETTLE_US:
                    break
            elif kind == _CLIENT:
                self._client_submit(a)
            else:
                a(self)
            if condition is not None and condition():
                break

    def _run_random(self, until_us: float, bound_us: float, stop_when_done: bool,
                    condition: Callable[[], bool] | None) -> None:
        """`_run` on a `random_order` network: events due now run first (a closed-loop client's
        next request, an action a message triggered); then, while messages are in flight, the
        next event is the delivery of one of them (after `ms_per_delivery`, unless a timed event
        comes first); otherwise virtual time moves to the next event on the heap."""
        heap = self._heap
        pool = self._pool
        per_us = self._per_delivery_us
        events_max = self.events_max if self.events_max is not None else float("inf")
        deliver = self._deliver
        randrange = self.rng.randrange
        while True:
            if self.events >= events_max:
                self.runaway = True
                break
            if pool and (not heap or heap[0][0] > self.now_us + per_us):
                if per_us:
                    at_us = self.now_us + per_us
                    if at_us > until_us or at_us > self.last_fault_us + bound_us:
                        break
                    self.now_us = at_us
                self.events += 1
                # `_deliver_random`, inline: this runs once per delivery.
                index = randrange(len(pool))
                pool[index], pool[-1] = pool[-1], pool[index]
                destination, source, payload = pool.pop()
                deliver(destination, source, payload)
            elif heap:
                at_us = heap[0][0]
                if at_us > until_us or at_us > self.last_fault_us + bound_us:
                    break
                _, _, kind, a, b, c = heapq.heappop(heap)
                self.now_us = at_us
                self.events += 1
                self._dispatch(kind, a, b, c)
                if stop_when_done and kind == _TICK and self.all_done() \
                        and at_us >= self.last_action_us + SETTLE_US:
                    break
            else:
                break
            if condition is not None and condition():
                break

    def _dispatch(self, kind: int, a: Any, b: Any, c: Any) -> None:
        """Run one event taken from the heap (outside the hot loop of `_run`)."""
        if kind == _DELIVER:
            self._deliver(a, b, c)
        elif kind == _TICK:
            self._tick()
        elif kind == _CLIENT:
            self._client_submit(a)
        else:
            a(self)

    def _deliver_random(self) -> None:
        """Deliver one message in flight, drawn uniformly by the generator."""
        pool = self._pool
        index = self.rng.randrange(len(pool))
        pool[index], pool[-1] = pool[-1], pool[index]
        destination, source, payload = pool.pop()
        self._deliver(destination, source, payload)

    # ------------------------------------------------------------------ driving step by step

    @property
    def now_ms(self) -> int:
        """Virtual time in whole milliseconds."""
        return self.now_us // 1000

    @property
    def in_flight(self) -> int:
        """How many message copies are in flight (sent, neither delivered nor lost yet)."""
        if self._random_order:
            return len(self._pool)
        return sum(1 for event in self._heap if event[2] == _DELIVER)

    def submit(self, client: SimClient, operation: bytes, read_only: bool = False) -> None:
        """`client` submits `operation` now (its request goes on the network at once). Raises
        RuntimeError if its previous request is still outstanding, ValueError if the operation
        is larger than the configuration allows (`ClientSession.submit`)."""
        session = client.session
        session.now_ms = max(session.now_ms, self.now_us // 1000)
        session.submit(operation, read_only)
        client.done = False
        client.record.operations.append((operation, self.now_us, None, None))
        self._flush_client(client)

    def inject(self, destination: Any, message: Any, source: Any = "test") -> None:
        """Put `message` on the network to `destination`, as if `source` sent it (a replica id,
        a client key, or any other name: the engine delivers what it is given; the replica
        judges it, e.g. by its signature)."""
        self.send(source, (destination,), message)

    def deliver_one(self) -> bool:
        """Deliver one message; False if none is in flight. On a `random_order` network: one
        drawn by the generator, after the events due now and in the next `ms_per_delivery` of
        virtual time; otherwise: every event up to the earliest delivery, and that delivery."""
        if self._random_order:
            if not self._pool:
                return False
            self._advance_to(self.now_us + self._per_delivery_us)
            if self._pool:
                self.events += 1
                self._deliver_random()
            return True
        if not any(event[2] == _DELIVER for event in self._heap):
            return False
        while True:
            at_us, _, kind, a, b, c = heapq.heappop(self._heap)
            self.now_us = at_us
            self.events += 1
            self._dispatch(kind, a, b, c)
            if kind == _DELIVER:
                return True

    def deliver_all(self, max_deliveries: int = 10_000_000) -> int:
        """`deliver_one` until nothing is in flight (or `max_deliveries`); return how many were
        delivered. On a `random_order` network without `ms_per_delivery` no time passes, so no
        timer fires: exactly the messages already sent and those they cause are delivered."""
        count = 0
        while count < max_deliveries and self.deliver_one():
            count += 1
        return count

    def advance_time(self, ms: float) -> None:
        """Move virtual time `ms` forward, running every timed event due meanwhile (ticks,
        client submissions, scheduled actions, and on a latency network the deliveries); on a
        `random_order` network nothing in flight is delivered. Raises ValueError if `ms` is
        negative."""
        if ms < 0:
            raise ValueError(f"ms must not be negative, got {ms!r}")
        self._advance_to(self.now_us + int(ms * 1000))

    def _advance_to(self, target_us: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= target_us:
            at_us, _, kind, a, b, c = heapq.heappop(heap)
            self.now_us = at_us
            self.events += 1
            self._dispatch(kind, a, b, c)
        self.now_us = max(self.now_us, target_us)

    def run_for(self, ms: float) -> None:
        """Run everything (deliveries, timers, clients, actions) for `ms` of virtual time.
        Raises ValueError if `ms` is negative."""
        if ms < 0:
            raise ValueError(f"ms must not be negative, got {ms!r}")
        target_us = self.now_us + int(ms * 1000)
        self._run(target_us, float("inf"), False, None)
        self.now_us = max(self.now_us, target_us)

    def run_until(self, condition: Callable[[], bool], within_ms: float = 120_000) -> bool:
        """Run until `condition()` holds (checked before the first event and after each) or
        `within_ms` of virtual time have passed; return whether it holds."""
        if condition():
            return True
        self._run(self.now_us + int(within_ms * 1000), float("inf"), False, condition)
        return condition()

    def run_workload(self, clients: list[SimClient], requests_per_client: int,
                     make_operation: MakeOperation | None = None,
                     within_ms: float = 600_000) -> int:
        """Closed loop: each of `clients` submits `requests_per_client` more operations, made
        by `make_operation` (see `MakeOperation`; default: what the client made so far), the
        next as soon as the previous result is accepted; run until all are answered. Returns
        the deliveries made. Raises RuntimeError if they are not answered within `within_ms`
        of virtual time, ValueError if `requests_per_client` is negative."""
        if requests_per_client < 0:
            raise ValueError(f"requests_per_client must not be negative, "
                             f"got {requests_per_client!r}")
        start = self.deliveries
        for client in clients:
            client.add_work(requests_per_client, make_operation)
            self._schedule(self.now_us, _CLIENT, client, None, None)
        pending = list(clients)

        def finished() -> bool:  # checked after every event: amortised O(1)
            while pending and pending[-1].done:
                pending.pop()
            return not pending

        with _young_collections_relaxed():
            done = self.run_until(finished, within_ms)
        if not done:
            left = sum(c.remaining + (c.session.outstanding is not None) for c in clients)
            raise RuntimeError(f"workload unfinished after {within_ms} ms of virtual time: "
                               f"{left} operations unanswered")
        return self.deliveries - start

    def all_done(self) -> bool:
        return all(c.done for c in self.clients if c.record.correct)

    def _tick(self) -> None:
        now_ms = self.now_us // 1000
        if self._sample_every_us and self.now_us >= self._next_sample_us:
            self._sample_memory(now_ms)
        for replica_id, replica in enumerate(self.replicas):
            if replica_id not in self.down:
                if self.observer is not None:
                    self.observer.ticking(replica_id, now_ms)
                replica.tick(now_ms)
                behaviour = self.behaviours.get(replica_id)
                if behaviour is not None:
                    behaviour.on_tick(now_ms)
                if self.replicas[replica_id].has_ready():
                    self._flush(replica_id)
        for client in self.clients:
            session = client.session
            if type(session) is ClientSession and session.outstanding is None:
                # An idle session's tick would only move its clock, and the clock matters only
                # at its next submit, which sets it (`_client_submit`).
                continue
            session.tick(now_ms)
            if session.has_ready():
                self._flush_client(client)
        self._schedule(self.now_us + TICK_MS * 1000, _TICK, None, None, None)

    def _sample_memory(self, now_ms: int) -> None:
        self._next_sample_us = self.now_us + self._sample_every_us
        peaks = self.peak_bytes_held
        for replica_id, replica in enumerate(self.replicas):
            if replica_id in self.down:
                continue
            held = replica.bytes_held()
            if held > peaks.get(replica_id, -1):
                peaks[replica_id] = held
                self.peak_bytes_held_at_ms[replica_id] = now_ms

    def _deliver(self, destination: Any, source: Any, payload: Any) -> None:
        self.deliveries += 1
        message = payload
        if type(payload) is bytes:
            try:
                message = decode(payload, self.limits)
            except DecodeError:
                self._trace_event(source, destination, b"undecodable")
                return
        # The trace event, inline (this runs once per delivery): see `_trace_event`.
        shape = _TRACE_SHAPES.get(type(message))
        if shape is None:
            self._trace_event(source, destination, message)
        else:
            name, has_view, has_sequence = shape
            events = self.trace.events
            events.append((self.now_us, source if type(source) is int else source[:6],
                           destination if type(destination) is int else destination[:6], name,
                           message.view if has_view else -1,
                           message.sequence if has_sequence else -1))
            if len(events) >= CHUNK:
                self.trace.flush_if_full()
        if self.observer is not None:
            self.observer.delivering(source, destination, message)
        if type(destination) is int:
            if destination in self.down:
                return
            behaviour = self.behaviours.get(destination)
            if behaviour is not None:
                message = behaviour.incoming(source, message)
                if message is None:
                    return
            else:
                note = self._on_delivery.get(type(message))
                if note is not None:  # evidence, before the replica can act on it
                    note(destination, source, message)
            replicas = self.replicas
            replicas[destination].receive(message)
            if replicas[destination].has_ready():  # most deliveries produce nothing
                self._flush(destination)
        else:
            client = self._clients_by_key.get(destination)
            # Channels are authenticated: a reply counts only as coming from its true source.
            if client is not None and type(message) is Reply and message.replica == source:
                client.session.receive(message)
                if client.session.has_ready():
                    self._flush_client(client)

    def _trace_event(self, source: Any, destination: Any, message: Any) -> None:
        self.trace.event(self.now_us, source, destination, message)

    def send(self, source: Any, destinations: tuple, message: Any) -> None:
        """Put one message on the network from `source` to each destination.

        A message larger than `frame_bytes_max` is dropped, as a real transport would (its
        frame is refused), and each copy counted in `oversized_dropped`: in wire mode by the
        encoded length; otherwise only PRE-PREPAREs and LOGGED-BATCHes are measured (the
        messages that carry a batch), first by `pbft.core.sizes.message_bytes`, an upper bound,
        and by `pbft.codec.encode` only when that bound exceeds the frame."""
        if self.network.triggers_armed:
            self._fire_triggers(source, message)
        if self.wire and not isinstance(message, bytes):
            payload = encode(message)
            if len(payload) > self._frame_bytes_max:
                self._drop_oversized(source, destinations, message)
                return
        else:
            payload = message
        if self._random_order:
            self._send_random(source, destinations, payload, message)
            return
        plain = self.network.plain_latency_us()
        if plain is not None:
            self._send_plain(source, destinations, payload, plain)
            return
        if type(payload) in _BATCH_CARRIERS and self._oversized(payload):
            self._drop_oversized(source, destinations, payload)
            return
        now = self.now_us
        arrivals = self.network.arrivals_us
        for destination in destinations:
            for at_us in arrivals(source, destination, now, message):
                self._schedule(at_us, _DELIVER, destination, source, payload)

    def _send_random(self, source: Any, destinations: tuple, payload: Any, message: Any) -> None:
        """`send` on a `random_order` network: each copy that is neither lost nor blocked joins
        the pool of messages in flight."""
        if type(payload) in _BATCH_CARRIERS and self._oversized(payload):
            self._drop_oversized(source, destinations, payload)
            return
        pool = self._pool
        if self.network.lossless():
            pool.extend([(destination, source, payload) for destination in destinations])
            return
        copies = self.network.copies
        for destination in destinations:
            for _ in range(copies(source, destination, message)):
                pool.append((destination, source, payload))

    def _fire_triggers(self, source: Any, message: Any) -> None:
        """`Network.on_message`: the actions this send fires run at this virtual time, after
        the event under way (they are faults, for the liveness clock)."""
        for action in self.network.fired(source, message):
            self.last_action_us = max(self.last_action_us, self.now_us)
            self.last_fault_us = max(self.last_fault_us, self.now_us)
            self._schedule(self.now_us, _ACTION, action, None, None)

    def _oversized(self, message: Any) -> bool:
        frame = self._frame_bytes_max
        return message_bytes(message) > frame and len(encode(message)) > frame

    def _drop_oversized(self, source: Any, destinations: tuple, message: Any) -> None:
        self.oversized_dropped += len(destinations)
        self._trace_event(source, b"oversized", message)

    def _send_plain(self, source: Any, destinations: tuple, payload: Any,
                    plain: tuple[float, float]) -> None:
        """`send` in the common case, no fault in force (`Network.plain_latency_us`): one
        latency draw per copy, consuming the generator exactly as `arrivals_us` would (and the
        same frame check as `send`)."""
        if type(payload) in _BATCH_CARRIERS and self._oversized(payload):
            self._drop_oversized(source, destinations, payload)
            return
        low, spread = plain
        draw = self.rng.random
        heap, push, now, counter = self._heap, heapq.heappush, self.now_us, self._counter
        for destination in destinations:
            counter += 1
            push(heap, (now + int(low + spread * draw()), counter, _DELIVER, destination, source,
                        payload))
        self._counter = counter

    def _flush(self, replica_id: int) -> None:
        replica = self.replicas[replica_id]
        behaviour = self.behaviours.get(replica_id)
        storage = self.storages[replica_id]
        evidence = self.evidence if behaviour is None else None
        while replica.has_ready():
            ready = replica.ready()
            if replica_id in self._write_crashes and self._dies_writing(replica_id, ready):
                return
            if evidence is not None:  # a NEW-VIEW it installs, before it acts on it
                evidence.persisted(replica_id, ready.persist)
            if replica_id in self._torn_next and not (
                self._torn_next[replica_id] and ready.durable_first
            ):
                # Dies during this Ready's persist: after its sends if the core allowed them to
                # go first (the worst case for recovery), before them otherwise.
                if not ready.durable_first:
                    self._send_ready(replica_id, behaviour, ready)
                    if ready.executed:
                        self._note_executed(replica_id, ready.executed)
                storage.append_torn(ready.persist, self.rng)
                del self._torn_next[replica_id]
                self.down.add(replica_id)
                return
            storage.append(ready.persist)
            self._send_ready(replica_id, behaviour, ready)
            if ready.executed:
                self._note_executed(replica_id, ready.executed)
            low = ready.status.low_watermark
            if low > self._compacted[replica_id] and self._compact_storage:
                self._compacted[replica_id] = low
                storage.compact(low)
            if evidence is not None and low != evidence.of[replica_id].low:
                evidence.collect(replica_id, low)
            replica.advance()

    def _dies_writing(self, replica_id: int, ready: Any) -> bool:
        """`crash_at_write`: if `ready` holds the awaited record, the replica dies writing it:
        the records before it are durable, it and the rest are not; votes the core let go
        before their records (`durable_first` False) have left. Returns whether it died."""
        kind, remaining = self._write_crashes[replica_id]
        index = next((i for i, r in enumerate(ready.persist) if type(r) is kind), None)
        if index is None:
            return False
        if remaining > 1:
            self._write_crashes[replica_id] = (kind, remaining - 1)
            return False
        del self._write_crashes[replica_id]
        if not ready.durable_first:
            self._send_ready(replica_id, self.behaviours.get(replica_id), ready)
            if ready.executed:
                self._note_executed(replica_id, ready.executed)
        storage = self.storages[replica_id]
        storage.append(ready.persist[:index])
        storage.torn_writes += 1
        self.writes_crashed.append((replica_id, kind.__name__, self.now_us))
        self._torn_next.pop(replica_id, None)
        self.down.add(replica_id)
        return True

    def _note_executed(self, replica_id: int, batches: tuple[ExecutedBatch, ...]) -> None:
        """Add what a replica executed to its history (`History.note_executed`); the first
        execution of each sequence number by a replica without a behaviour must follow 2f + 1
        matching COMMITs (evidence)."""
        first = self.history.note_executed(replica_id, batches, self.now_us)
        if first and self.evidence is not None and replica_id not in self.behaviours:
            for batch in first:
                self.evidence.executed(replica_id, batch.sequence, batch.digest)

    def _send_ready(self, replica_id: int, behaviour: Any, ready: Any) -> None:
        if self.observer is not None:
            self.observer.readied(replica_id, ready)
        plain = None
        if behaviour is None:
            self._note_votes(replica_id, ready.messages, ready.status.low_watermark)
            if not self.wire and "send" not in self.__dict__:
                plain = self.network.plain_latency_us()
        if plain is not None:
            # The common case: what `send` does, without asking the network again for each
            # message. (Not when `send` has been replaced on this simulation, e.g. by a test
            # recording what is sent.)
            send_plain = self._send_plain
            for outbound in ready.messages:
                send_plain(replica_id, outbound.to, outbound.message, plain)
            for reply in ready.replies:
                send_plain(replica_id, (reply.client,), reply, plain)
            return
        for outbound in ready.messages:
            if behaviour is None:
                self.send(replica_id, outbound.to, outbound.message)
            else:
                for to, message in behaviour.outgoing(outbound.to, outbound.message):
                    self.send(replica_id, to, message)
        for reply in ready.replies:
            if behaviour is None:
                self.send(replica_id, (reply.client,), reply)
            else:
                for to, message in behaviour.outgoing((reply.client,), reply):
                    self.send(replica_id, to, message)

    def _note_votes(self, replica_id: int, messages: tuple, low: int) -> None:
        """What a replica without a behaviour sends: to the evidence, then its votes and
        VIEW-CHANGEs to the history (single_vote, needless_view_changes)."""
        if self.evidence is not None:
            self.evidence.sent(replica_id, messages, low)
        self.history.note_sent(replica_id, messages)

    # ------------------------------------------------------------------ clients

    def _client_submit(self, client: SimClient) -> None:
        session = client.session
        if client.remaining <= 0 or session.outstanding is not None:
            return
        if self.now_us < self.clients_paused_until_us:
            self._schedule(self.clients_paused_until_us, _CLIENT, client, None, None)
            return
        i = len(client.record.operations)
        operation, read_only = client.next_operation(i)
        session.now_ms = max(session.now_ms, self.now_us // 1000)
        if read_only:
            session.submit(operation, read_only=True)
        else:
            session.submit(operation)
        client.remaining -= 1
        client.record.operations.append((operation, self.now_us, None, None))
        self._flush_client(client)

    def _flush_client(self, client: SimClient) -> None:
        session = client.session
        ready = session.ready()
        key = session.client
        for outbound in ready.messages:
            message = outbound.message
            if type(message) is Request and message.client == key:
                self._mark_request(client.record, message)
            self.send(key, outbound.to, message)
        for result in ready.results:
            self._client_result(client, result)
        session.advance()

    @staticmethod
    def _mark_request(record: ClientRecord, request: Request) -> None:
        """Note a request sent for the client's latest operation (`RequestMarks`)."""
        index = len(record.operations) - 1
        if index < 0:
            return
        marks = record.marks.get(index)
        if marks is None:
            record.marks[index] = RequestMarks(request.read_only, [request.timestamp])
        elif request.timestamp not in marks.timestamps:
            marks.timestamps.append(request.timestamp)

    def _client_result(self, client: SimClient, result: ClientResult) -> None:
        operations = client.record.operations
        operation, invoked_us, _, _ = operations[-1]
        operations[-1] = (operation, invoked_us, self.now_us, result.result)
        client.results.append(result)
        if self.observer is not None:
            self.observer.client_result(client, result)
        marks = client.record.marks.get(len(operations) - 1)
        if marks is not None:
            marks.result_timestamp = result.timestamp
            marks.answered_read_only = result.read_only
        if client.remaining > 0:
            # No think time: the next request goes out now, as the next event (not from inside
            # this flush of the session).
            think_us = int(self.rng.expovariate(1.0 / max(client.think_ms, 0.001)) * 1000) \
                if client.think_ms else 0
            self._schedule(self.now_us + think_us, _CLIENT, client, None, None)
        else:
            client.done = True

    # ------------------------------------------------------------------ results

    def trace_hash(self) -> str:
        return self.trace.hexdigest()

    def committed(self) -> int:
        return sum(1 for c in self.clients for op in c.record.operations if op[2] is not None)

    def correct_replicas(self) -> list[int]:
        return [r for r in range(len(self.replicas)) if r not in self.faulty]


def random_order_cluster(replicas: int = 4, *, seed: int = 0, **options: Any) -> Simulation:
    """A simulation to drive step by step (`submit`, `inject`, `deliver_one`, `advance_time`,
    ...), as the whole-cluster tests, the benchmarks of the core and `make demo` do: `replicas`
    cores on a random-order network, real Ed25519 and the wire codec on every message, the
    shipped configuration (changed by `config_overrides`), and no clients until the caller
    adds them. `options` go to `Simulation` and may replace any of these."""
    settings: dict[str, Any] = dict(
        seed=seed, replicas=replicas, clients=0, network=NetworkProfile(random_order=True),
        wire=True, insecure_signatures=False, shipped_config=True)
    return Simulation(**{**settings, **options})
