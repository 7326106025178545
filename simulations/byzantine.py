"""Byzantine behaviours: small interceptors around one replica's traffic.

A behaviour sees every message its replica sends (`outgoing`) and receives (`incoming`), and
can rewrite, drop, duplicate or add to them, signing with the replica's own key through its
context. Writing a new one takes a few lines:

    class DropCommits(Behaviour):
        '''Never lets a COMMIT out.'''
        def outgoing(self, to, message):
            return [] if isinstance(message, Commit) else [(to, message)]

    Simulation(seed=1, behaviours={2: DropCommits()})

The replica underneath runs the real core; a behaviour only lies about what it says and hears.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pbft.codec import signing_payload
from pbft.messages import Message

Send = list[tuple[tuple, Any]]


class ByzantineContext:
    """What a behaviour may use: its replica's id, key and core, the configuration, the
    simulation's random generator and clock, and a way to send extra messages."""

    def __init__(self, simulation: Any, replica_id: int) -> None:
        self._simulation = simulation
        self.replica_id = replica_id
        self.config = simulation.config
        self.signer = simulation.signers[replica_id]
        self.rng = simulation.rng

    @property
    def replica(self):
        return self._simulation.replicas[self.replica_id]

    @property
    def now_ms(self) -> int:
        return self._simulation.now_us // 1000

    @property
    def others(self) -> tuple[int, ...]:
        return tuple(r for r in range(self.config.n) if r != self.replica_id)

    def sign(self, message: Message) -> Message:
        """`message` re-signed with this replica's own key (a lie, but a signed one)."""
        return replace(message, signature=self.signer.sign(signing_payload(message)))

    def send(self, to: tuple, message: Any) -> None:
        """Send an extra message (or raw bytes) from this replica, bypassing `outgoing`."""
        self._simulation.send(self.replica_id, to, message)


class Behaviour:
    """An honest pass-through; subclasses override what they need."""

    #: One line for `python -m simulations list` and run reports.
    description = "honest"

    def attach(self, context: ByzantineContext) -> None:
        self.context = context

    def outgoing(self, to: tuple, message: Message) -> Send:
        return [(to, message)]

    def incoming(self, source: Any, message: Message) -> Message | None:
        return message

    def on_tick(self, now_ms: int) -> None:
        pass
