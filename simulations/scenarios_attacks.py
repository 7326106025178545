"""Scenarios for the attacks of issue 11 on availability (`simulations.attacks`): one per item
of the issue that the core must withstand (1, 2, 3, 6, 8, 9), n = 4 with at most one Byzantine
replica unless the name says otherwise.

Each must stay safe and live like every scenario, and also meet the goals of issue 11, checked
by the availability oracles it switches on (`simulations.checkers`): every correct request
completes within `request_wait_bound_ms(config)`, no correct replica holds more than its byte
budget nor serves one peer more than `served_work_budget(config)`, and no view change happens
while the primary is correct. They register in the same
catalogue (`simulations.scenarios` imports this module last).
"""

from __future__ import annotations

from pbft.config import ClusterConfig
from pbft.core import sizes
from pbft.messages import Checkpoint, Commit, PrePrepare

from . import checkers
from .attacks import (
    BeyondHighWatermark,
    CensoringPrimary,
    DuplicateBatchPrimary,
    JustTolerablePrimary,
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
                 "bytes_held_bound": sizes.replica_bytes_budget,
                 "served_work_budget": checkers.served_work_budget}


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
          bytes_held_bound=_stash_flood_bound, served_work_budget=checkers.served_work_budget)
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


# ------------------------------------------------------------------ issue 14: whole classes


@scenario("byz_slow_primary_alone", "the primary sends each PRE-PREPARE just before the request "
                                    "timeout, no accomplice: backups replace it (V1'')",
          **_AVAILABILITY)
def _slow_primary_alone(seed: int) -> Simulation:
    return Simulation(seed=seed, behaviours={0: SlowPrimary()})


@scenario("byz_slow_primary_just_tolerated", "the primary holds each PRE-PREPARE 15 ms under "
                                             "the proposal delay backups always tolerate "
                                             "(V1''): it keeps its view",
          **_AVAILABILITY)
def _slow_primary_just_tolerated(seed: int) -> Simulation:
    return Simulation(seed=seed, behaviours={0: JustTolerablePrimary()})


@scenario("byz_withhold_commits_from_some", "a backup sends its COMMITs to the primary only "
                                            "(not to the other two backups), and leaves them "
                                            "out of the batches it serves them",
          **_AVAILABILITY)
def _withhold_commits_from_some(seed: int) -> Simulation:
    liar = 1 + seed % 3
    victims = tuple(r for r in (1, 2, 3) if r != liar)
    return Simulation(seed=seed, behaviours={liar: WithholdCommits(peers=victims)})


@scenario("byz_commit_loss_withheld_commits", "a backup withholds its COMMITs from replica 3, "
                                              "and 60% of COMMITs to 3 are lost until 4 s "
                                              "(Network.lose): 3 catches up from the log")
def _commit_loss_withheld_commits(seed: int) -> Simulation:
    sim = Simulation(seed=seed, behaviours={1: WithholdCommits(peers=(3,))})
    sim.network.lose(Commit, 0.6, destinations=[3])
    sim.at(4_000, lambda s: s.network.heal())
    return sim


@scenario("byz_trigger_isolate_primary", "the primary's 20th PRE-PREPARE triggers "
                                         "(Network.on_message) its isolation for 2 s; a backup "
                                         "withholds its COMMITs from another")
def _trigger_isolate_primary(seed: int) -> Simulation:
    sim = Simulation(seed=seed, behaviours={1: WithholdCommits(peers=(2,))})

    def isolate(s: Simulation) -> None:
        s.network.isolate(0, [1, 2, 3])
        s.at(s.now_us / 1000 + 2_000, lambda s: s.network.heal())

    sim.network.on_message(PrePrepare, 0, 20, isolate)
    return sim


@scenario("byz_crash_writing_first_commit", "a backup dies while persisting its first COMMIT "
                                            "(Simulation.crash_at_write), restarts at 1 s; "
                                            "another withholds its COMMITs from it")
def _crash_writing_first_commit(seed: int) -> Simulation:
    victim = 1 + seed % 3
    liar = 1 + (seed + 1) % 3
    sim = Simulation(seed=seed, behaviours={liar: WithholdCommits(peers=(victim,))})
    sim.crash_at_write(victim, Commit)
    # Its first COMMIT is written within the first batch (tens of ms): it is down by then.
    sim.at(1_000, lambda s: s.restart(victim) if victim in s.down else None)
    return sim


@scenario("byz_beyond_high_watermark", "the primary also proposes each batch at the sequence "
                                       "number just above its high watermark (N3)")
def _beyond_high_watermark(seed: int) -> Simulation:
    return Simulation(seed=seed, config_overrides={"checkpoint_interval": 4, "log_window": 8},
                      behaviours={0: BeyondHighWatermark()})
