"""Scenarios for the attacks of issue 11 on availability (`simulations.attacks`): one per item
of the issue that the core must withstand (1, 2, 3, 6, 8, 9), n = 4 with at most one Byzantine
replica unless the name says otherwise.

Each must stay safe and live like every scenario, and also meet the goals of issue 11, checked
by the availability oracles it switches on (`simulations.checkers`): every correct request
completes within `request_wait_bound_ms(config)`, no correct replica holds more than its byte
budget, and no view change happens while the primary is correct. They register in the same
catalogue (`simulations.scenarios` imports this module last).
"""

from __future__ import annotations

from pbft.config import ClusterConfig
from pbft.core import sizes
from pbft.messages import Checkpoint

from . import checkers
from .attacks import (
    CensoringPrimary,
    DuplicateBatchPrimary,
    LargeRequestClients,
    SlowPrimary,
    StashFlooder,
    WithholdCommits,
)
from .engine import Simulation
from .scenarios import scenario

def _shipped(bound: str) -> int:
    """The shipped default of a `ClusterConfig` bound."""
    return ClusterConfig.__dataclass_fields__[bound].default


#: What a correct replica of the stash flood's workload holds without the flood (4 clients of
#: kv_append, the simulator's log window of 32), with room to spare: measured peaks are below
#: 20 kB (tests/test_sim_attacks.py checks the bound).
FAULT_FREE_BYTES_HELD = 256 * 1024


def _stash_flood_bound(config: ClusterConfig) -> int:
    """The flooder's share of a correct replica's memory is its stash, at most stash_bytes_max
    (bounded per sender); the rest is what the same replica holds without the flood."""
    return config.stash_bytes_max + FAULT_FREE_BYTES_HELD


#: The oracles every scenario here switches on.
_AVAILABILITY = {"request_wait_bound_ms": checkers.request_wait_bound_ms,
                 "bytes_held_bound": sizes.replica_bytes_budget}


@scenario("byz_large_requests", "no Byzantine replica: 8 correct clients send 1 MiB requests at "
                                "once with the shipped batch settings (item 1)",
          needless_view_changes=0, **_AVAILABILITY)
def _large_requests(seed: int) -> Simulation:
    sim = Simulation(seed=seed, clients=0,
                     app_factory=LargeRequestClients.app_factory(_shipped("operation_bytes_max")))
    LargeRequestClients(count=8, requests=3).install(sim)
    return sim


@scenario("byz_censoring_primary", "the primary orders every client's requests but one's, "
                                   "which it drops, also when backups relay them (item 2)",
          **_AVAILABILITY)
def _censoring_primary(seed: int) -> Simulation:
    # Long enough that the other clients keep the primary busy past the wait bound.
    sim = Simulation(seed=seed, clients=4, requests_per_client=80, think_ms=200)
    sim.add_behaviour(0, CensoringPrimary(victim=sim.clients[seed % 4].session.client))
    return sim


@scenario("byz_duplicate_batch", "the primary proposes one batch at n and n + 1 (n + 1 first, "
                                 "to two backups), n a checkpoint, then falls silent (item 3)",
          **_AVAILABILITY)
def _duplicate_batch(seed: int) -> Simulation:
    sim = Simulation(seed=seed)
    sim.add_behaviour(0, DuplicateBatchPrimary(from_sequence=2 * sim.config.checkpoint_interval))
    return sim


@scenario("byz_stash_flood", "the next view's primary sends 40 signed PRE-PREPAREs of 3 MiB for "
                             "the next and a far view, and votes above H (item 6)",
          request_wait_bound_ms=checkers.request_wait_bound_ms,
          bytes_held_bound=_stash_flood_bound)
def _stash_flood(seed: int) -> Simulation:
    # The flooder's share is bounded per sender by stash_bytes_max: four batches here.
    return Simulation(seed=seed, behaviours={1: StashFlooder()},
                      config_overrides={"stash_bytes_max": 4 * _shipped("batch_bytes_max")})


@scenario("byz_late_checkpoints", "no Byzantine replica: CHECKPOINTs to two backups arrive "
                                  "150-300 ms late, with a checkpoint every 2 batches (item 8)",
          needless_view_changes=0, **_AVAILABILITY)
def _late_checkpoints(seed: int) -> Simulation:
    sim = Simulation(seed=seed, config_overrides={"checkpoint_interval": 2, "log_window": 4})
    sim.network.slow_down(Checkpoint, 150, 300, destinations=[1, 2])
    return sim


def _slow_primary_workload(seed: int, behaviours: dict | None = None) -> Simulation:
    # Long enough that replacing the slow primary after a few seconds still leaves correct
    # clients well above half their fault-free throughput.
    return Simulation(seed=seed, replicas=7, requests_per_client=100, behaviours=behaviours)


@scenario("byz_slow_primary_withholding_accomplice", "n = 7: the primary sends each PRE-PREPARE "
          "just before the request timeout, a backup never sends COMMITs (item 9)",
          fault_free=_slow_primary_workload, **_AVAILABILITY)
def _slow_primary_withholding_accomplice(seed: int) -> Simulation:
    accomplice = 1 + seed % 6
    return _slow_primary_workload(seed, {0: SlowPrimary(), accomplice: WithholdCommits()})
