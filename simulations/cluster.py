"""An in-process cluster: n replica cores and some client sessions wired together in one
process, with every message delivered in an order drawn from one seeded `random.Random`.

This is the seed of the simulator: no clock, no threads, no trio. Virtual time moves only when
the caller says so (`advance_time`). With `wire=True` (the default) every message is encoded by
`pbft.codec` when sent and decoded when delivered, as it would be on a network.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pbft.app import KeyValueStore, StateMachine
from pbft.codec import Limits, decode, encode
from pbft.config import ClusterConfig, ReplicaInfo
from pbft.core import ClientResult, ClientSession, ExecutedBatch, Replica
from pbft.crypto import Signer, Verifier, sha256
from pbft.ed25519 import Ed25519Signer, Ed25519Verifier
from pbft.messages import Message, Reply

#: Decides whether a message in flight is delivered: (source, destination, message) -> bool.
#: Sources and destinations are replica ids (int) or client keys (bytes).
DeliveryFilter = Callable[[Any, Any, Message], bool]


def deterministic_signer(label: str) -> Ed25519Signer:
    """A key derived from `label`: equal labels, equal keys, so runs are reproducible."""
    return Ed25519Signer(sha256(b"pbft-sim-key:" + label.encode()))


@dataclass
class _InFlight:
    source: Any
    destination: Any
    payload: Any  # bytes on the wire, or the message itself with wire=False


@dataclass
class DeliveryStats:
    delivered: int = 0
    filtered: int = 0
    undecodable: int = 0


class InProcessCluster:
    """n replicas and any number of clients in one process, deterministic for a given seed.

    `config_overrides` are passed to `ClusterConfig` (bounds, timeouts); `app_factory` builds
    each replica's state machine; `verifier` and `signer_factory` (label -> Signer) may be
    replaced, e.g. by counting or, for long runs, cheap stand-ins.
    """

    def __init__(
        self,
        n: int = 4,
        *,
        seed: int = 0,
        wire: bool = True,
        app_factory: Callable[[], StateMachine] = KeyValueStore,
        verifier: Verifier | None = None,
        signer_factory: Callable[[str], Signer] | None = None,
        config_overrides: dict[str, Any] | None = None,
        ms_per_delivery: int = 0,
    ) -> None:
        self.rng = random.Random(seed)
        #: Virtual time each delivery takes (ticking every node): a crude network latency.
        self.ms_per_delivery = ms_per_delivery
        self.wire = wire
        self._signer_factory = signer_factory or deterministic_signer
        self.signers = [self._signer_factory(f"replica-{i}") for i in range(n)]
        self.config = ClusterConfig(
            replicas=tuple(ReplicaInfo(i, s.public_key) for i, s in enumerate(self.signers)),
            **(config_overrides or {}),
        )
        self.limits = Limits.from_config(self.config)
        self.verifier = verifier if verifier is not None else Ed25519Verifier()
        self.now_ms = 0
        self.apps = [app_factory() for _ in range(n)]
        self.replicas = [
            Replica(self.config, i, self.signers[i], self.verifier, self.apps[i], self.now_ms)
            for i in range(n)
        ]
        self.clients: dict[bytes, ClientSession] = {}
        self.executed: dict[int, list[ExecutedBatch]] = {i: [] for i in range(n)}
        self.results: dict[bytes, list[ClientResult]] = {}
        self.persisted: dict[int, list[Message]] = {i: [] for i in range(n)}
        self.filters: list[DeliveryFilter] = []
        #: Rewrites a replica's outgoing protocol messages: (destinations, message) -> what is
        #: really sent, as a list of (destinations, message). Byzantine behaviours live here.
        self.interceptors: dict[int, Callable[[tuple[int, ...], Message], list]] = {}
        #: Crashed replicas: they neither receive nor tick until restarted.
        self.down: set[int] = set()
        self._app_factory = app_factory
        self.stats = DeliveryStats()
        self._in_flight: list[_InFlight] = []
        self._completed: list[ClientSession] = []

    # ------------------------------------------------------------------ set-up

    def add_client(self, name: str) -> ClientSession:
        session = ClientSession(self.config, self._signer_factory(f"client-{name}"), self.now_ms)
        self.clients[session.client] = session
        self.results[session.client] = []
        return session

    def submit(self, session: ClientSession, operation: bytes, read_only: bool = False) -> None:
        session.submit(operation, read_only)
        self._flush_client(session)

    def crash(self, replica_id: int) -> None:
        """Stop a replica: messages to it are lost until `restart`."""
        self.down.add(replica_id)

    def restart(self, replica_id: int, *, empty: bool = False) -> Replica:
        """Bring a crashed replica back from what it persisted (every record its `ready()`
        handed over before the crash). With `empty`, its disk is lost too: it starts from
        nothing and must catch up by state transfer (S1)."""
        self.apps[replica_id] = self._app_factory()
        if empty:
            self.persisted[replica_id] = []
        self.replicas[replica_id] = Replica.recover(
            self.config, replica_id, self.signers[replica_id], self.verifier,
            self.apps[replica_id], self.persisted[replica_id], self.now_ms,
        )
        self._flush_replica(self.replicas[replica_id])
        self.down.discard(replica_id)
        return self.replicas[replica_id]

    def inject(self, destination: int, message: Message, source: Any = "test") -> None:
        """Put `message` in flight to replica `destination`, as if from `source`."""
        self._enqueue(source, destination, message)

    # ------------------------------------------------------------------ running

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def deliver_one(self) -> bool:
        """Deliver one message chosen by the seeded generator; False if none is in flight."""
        queue = self._in_flight
        if not queue:
            return False
        if self.ms_per_delivery:
            self.advance_time(self.ms_per_delivery)
            if not queue:
                return True
        index = self.rng.randrange(len(queue))
        queue[index], queue[-1] = queue[-1], queue[index]
        item = queue.pop()
        message = item.payload
        if self.wire:
            try:
                message = decode(message, self.limits)
            except ValueError:
                self.stats.undecodable += 1
                return True
        if self.filters and not all(
            allow(item.source, item.destination, message) for allow in self.filters
        ):
            self.stats.filtered += 1
            return True
        self.stats.delivered += 1
        destination = item.destination
        if isinstance(destination, int):
            if destination in self.down:
                self.stats.filtered += 1
                return True
            replica = self.replicas[destination]
            replica.receive(message)
            self._flush_replica(replica)
        else:
            session = self.clients.get(destination)
            if session is not None and isinstance(message, Reply):
                # The channel is authenticated: a reply names its true source.
                if message.replica == item.source:
                    session.receive(message)
                    self._flush_client(session)
        return True

    def run(self, max_deliveries: int = 10_000_000, until: Callable[[], bool] | None = None) -> int:
        """Deliver until nothing is in flight (or `until()` holds); return deliveries made."""
        count = 0
        while count < max_deliveries and (until is None or not until()):
            if not self.deliver_one():
                break
            count += 1
        return count

    def run_workload(
        self,
        sessions: list[ClientSession],
        requests_per_client: int,
        make_operation: Callable[[int, int], bytes],
        max_deliveries: int = 50_000_000,
        idle_step_ms: int | None = None,
    ) -> int:
        """Closed loop: each session submits `make_operation(session_index, i)` for i in
        0..requests_per_client-1, the next as soon as the previous result is accepted. When
        nothing is in flight, virtual time advances by `idle_step_ms` (default: the client retry
        timeout) so that timers fire. Returns deliveries made; raises RuntimeError if the
        workload does not finish within `max_deliveries` or 1,000 idle steps."""
        index = {s.client: i for i, s in enumerate(sessions)}
        submitted = dict.fromkeys(index, 0)
        step_ms = idle_step_ms or self.config.client_retry_timeout_ms
        self._completed = list(sessions)
        deliveries = idle_steps = 0
        while True:
            completed, self._completed = self._completed, []
            for session in completed:
                if submitted[session.client] < requests_per_client and session.outstanding is None:
                    operation = make_operation(index[session.client], submitted[session.client])
                    submitted[session.client] += 1
                    self.submit(session, operation)
            if self.deliver_one():
                deliveries += 1
                if deliveries >= max_deliveries:
                    raise RuntimeError(f"workload unfinished after {deliveries} deliveries")
                continue
            if all(
                submitted[s.client] == requests_per_client and s.outstanding is None
                for s in sessions
            ):
                return deliveries
            idle_steps += 1
            if idle_steps > 1_000:
                raise RuntimeError("workload stalled: nothing in flight and no timer helps")
            self.advance_time(step_ms)

    def settle(self, duration_ms: int, step_ms: int = 50) -> None:
        """Let `duration_ms` of virtual time pass in steps, delivering everything after each,
        so that timers (retransmission, view change, state transfer) can fire and finish."""
        for _ in range(max(1, duration_ms // step_ms)):
            self.advance_time(step_ms)
            self.run()

    def advance_time(self, ms: int) -> None:
        """Move virtual time forward and tick every replica and client."""
        self.now_ms += ms
        for replica in self.replicas:
            if replica.id not in self.down:
                replica.tick(self.now_ms)
                self._flush_replica(replica)
        for session in self.clients.values():
            session.tick(self.now_ms)
            self._flush_client(session)

    # ------------------------------------------------------------------ plumbing

    def _enqueue(self, source: Any, destination: Any, message: Message) -> None:
        payload = encode(message) if self.wire else message
        self._in_flight.append(_InFlight(source, destination, payload))

    def _flush_replica(self, replica: Replica) -> None:
        while replica.has_ready():
            ready = replica.ready()
            self.persisted[replica.id].extend(ready.persist)
            intercept = self.interceptors.get(replica.id)
            for outbound in ready.messages:
                sends = (
                    [(outbound.to, outbound.message)] if intercept is None
                    else intercept(outbound.to, outbound.message)
                )
                for to, message in sends:
                    payload = encode(message) if self.wire else message
                    for destination in to:
                        self._in_flight.append(_InFlight(replica.id, destination, payload))
            for reply in ready.replies:
                self._enqueue(replica.id, reply.client, reply)
            self.executed[replica.id].extend(ready.executed)
            replica.advance()

    def _flush_client(self, session: ClientSession) -> None:
        while session.has_ready():
            ready = session.ready()
            for outbound in ready.messages:
                for destination in outbound.to:
                    self._enqueue(session.client, destination, outbound.message)
            if ready.results:
                self.results[session.client].extend(ready.results)
                self._completed.append(session)
            session.advance()
