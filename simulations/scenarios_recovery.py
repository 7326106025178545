"""Catalogue scenarios for crash recovery and reads (issue 12): every replica crashes under the
bank workload (`simulations.bank`, about a third of the operations read-only), and restarts at
once or one by one, with a wiped disk, a Byzantine replica, an idle period, reads arriving as
the replicas restart, or duplicated messages; reads against late COMMITs and a lagging liar;
and an application that raises on a "poison" request.

Each is judged by every checker (the linearizability checker replays the application as the
model and places every read-only answer on a prefix of the committed order), by `check_bank`
where the bank runs (money conserved in every read and every replica's state, no transfer
applied twice) and by the catch-up oracle (`checkers.CatchUpWatch`: every correct running
replica has executed what any correct replica had executed, `CATCH_UP_BOUND_MS` after the last
fault, even without load). A run stops after `EVENTS_MAX` events (a message storm is a
"runaway" violation, not a hang).

`RECOVERY_CI` says which take part in the CI sweep of the catalogue (a scenario that exposes
a bug of the core is registered with `ci=False` until the core passes it):

    python -m simulations run recovery_bank_crash_all_idle_wiped --seed 10 --json
    python -m simulations sweep --scenarios recovery_bank_crash_all,recovery_poison --seeds 1-50
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pbft.app import ExecutionContext, KeyValueStore, kv_append, kv_get

from pbft.messages import Commit

from .bank import Bank, balances, bank_workload, check_bank, transfer
from .byzantine import Behaviour, EquivocatingPrimary, LaggingReads, Replay, Silent
from .engine import Simulation
from .network import NetworkProfile
from .scenarios import scenario

#: The scenarios of this module in the CI sweep (tests/test_simulator.py), and over 50 seeds in
#: the slow sweep (tests/test_sim_recovery.py). A new scenario that exposes a bug of the core
#: stays out until the core passes it. What these found, seeds 1-50:
#:   recovery_bank_crash_all_idle_wiped         34 failed catch_up on main at aeeae0a (seed 1:
#:                                              the wiped replica still at 0 5 s after the
#:                                              restart); at e775ee2 seeds 10, 26, 37, 46
#:   recovery_bank_wiped_primary_duplication    at e775ee2 seed 25 (liveness: replicas fetching
#:                                              the state of a checkpoint nobody kept)
#:   recovery_bank_crash_all_reads_at_restart   22 failed linearizability at aeeae0a (seed 13:
#:                                              reads missing transfers acknowledged 1.6 s before)
#:   recovery_bank_crash_all_duplication        seeds 17, 31 at aeeae0a (invariant: replica 2's
#:                                              `_fetch.sequence == stable_checkpoint` assert)
#:   recovery_bank_late_commits_lagging_reads   every seed at aeeae0a (linearizability: a
#:                                              client's read missing its own transfer)
#:   recovery_poison, recovery_poison_crash_all every seed before aeeae0a (the replica raising)
#: All pass every seed 1-50 at ddd4161.
RECOVERY_CI: frozenset[str] = frozenset({
    "recovery_bank_crash_all",
    "recovery_bank_crash_all_staggered",
    "recovery_bank_crash_all_wiped",
    "recovery_bank_crash_all_byzantine",
    "recovery_bank_crash_all_idle",
    "recovery_bank_crash_all_idle_wiped",
    "recovery_bank_crash_all_reads_at_restart",
    "recovery_bank_crash_all_duplication",
    "recovery_bank_wiped_primary_duplication",
    "recovery_bank_partitions_healed_one_by_one",
    "recovery_bank_late_commits_lagging_reads",
    "recovery_poison",
    "recovery_poison_crash_all",
})
#: The seeds of the CI sweep; the slow sweep (tests/test_sim_recovery.py) runs more.
RECOVERY_SEEDS = tuple(range(1, 11))
#: Every correct running replica catches up within this long after the last fault.
CATCH_UP_BOUND_MS = 10_000
#: In the idle scenarios, clients submit nothing for this long after the restart; the
#: catch-up deadline falls inside it, so that no new request helps.
IDLE_MS = 15_000
IDLE_CATCH_UP_BOUND_MS = 5_000
EVENTS_MAX = 600_000
#: The bank's workload: 4 clients of 60 operations, 30 ms think time (about 2.5 s of load),
#: and 2 readers that think longer (so that some of their reads start right after a restart,
#: not only when a request outstanding since the crash has completed) and mostly read.
CLIENTS, REQUESTS, THINK_MS = 4, 60, 30.0
READERS, READER_REQUESTS, READER_THINK_MS, READER_READ_FRACTION = 2, 15, 250.0, 0.7


def _recovery(name: str, description: str, **options) -> Callable:
    options.setdefault("catch_up_bound_ms", CATCH_UP_BOUND_MS)
    return scenario(name, description, ci=name in RECOVERY_CI, seeds=RECOVERY_SEEDS,
                    events_max=EVENTS_MAX, **options)


def _bank(seed: int, **options) -> Simulation:
    sim = Simulation(seed=seed, clients=CLIENTS, requests_per_client=REQUESTS,
                     think_ms=THINK_MS, app_factory=Bank, make_operation=bank_workload(),
                     **options)
    readers = bank_workload(read_fraction=READER_READ_FRACTION)
    for r in range(READERS):
        sim.add_client(f"reader-{r}", READER_REQUESTS, READER_THINK_MS, readers)
    return sim


def _schedule(seed: int) -> random.Random:
    """The generator of a scenario's fault times (not the simulation's: drawing them does not
    move the network's draws)."""
    return random.Random(seed ^ 0x12EC)


def _crash_all_at_once(sim: Simulation, crash_ms: float, restart_ms: float,
                       wipe: int | None = None) -> None:
    n = len(sim.replicas)

    def crash(s: Simulation) -> None:
        for r in range(n):
            s.crash(r)

    def restart(s: Simulation) -> None:
        for r in range(n):
            s.restart(r, wipe=r == wipe)

    sim.at(crash_ms, crash)
    sim.at(restart_ms, restart)


@_recovery("recovery_bank_crash_all", "bank with reads: all four replicas crash at once "
                                      "mid-load and restart together 0.3-1.5 s later",
           linearizability=check_bank)
def _crash_all(seed: int) -> Simulation:
    sim = _bank(seed)
    draw = _schedule(seed)
    crash_ms = draw.uniform(600, 2_000)
    _crash_all_at_once(sim, crash_ms, crash_ms + draw.uniform(300, 1_500))
    return sim


@_recovery("recovery_bank_crash_all_staggered", "bank with reads: the replicas crash one by "
                                                "one within 0.6 s (all down together), then "
                                                "restart one by one in another order",
           linearizability=check_bank)
def _crash_all_staggered(seed: int) -> Simulation:
    sim = _bank(seed)
    draw = _schedule(seed)
    start = draw.uniform(600, 2_000)
    crashes = [start + draw.uniform(0, 600) for _ in range(4)]
    restarts = [start + draw.uniform(700, 2_000) for _ in range(4)]
    for r in range(4):
        sim.at(crashes[r], lambda s, r=r: s.crash(r))
        sim.at(restarts[r], lambda s, r=r: s.restart(r))
    return sim


@_recovery("recovery_bank_crash_all_wiped", "bank with reads: all replicas crash at once; one "
                                            "(by seed) restarts with a wiped disk",
           linearizability=check_bank)
def _crash_all_wiped(seed: int) -> Simulation:
    sim = _bank(seed)
    draw = _schedule(seed)
    crash_ms = draw.uniform(600, 2_000)
    _crash_all_at_once(sim, crash_ms, crash_ms + draw.uniform(300, 1_500), wipe=seed % 4)
    return sim


#: The Byzantine replica of `recovery_bank_crash_all_byzantine`, by seed modulo 3.
BYZANTINE_BY_SEED: tuple[tuple[Callable[[], Behaviour], int], ...] = (
    (Silent, 2),
    (Replay, 1),
    (EquivocatingPrimary, 0),
)


@_recovery("recovery_bank_crash_all_byzantine", "bank with reads and one Byzantine replica "
                                                "(silent, replaying or an equivocating primary, "
                                                "by seed): all four crash at once and restart",
           linearizability=check_bank)
def _crash_all_byzantine(seed: int) -> Simulation:
    make, replica = BYZANTINE_BY_SEED[seed % len(BYZANTINE_BY_SEED)]
    sim = _bank(seed, behaviours={replica: make()})
    draw = _schedule(seed)
    crash_ms = draw.uniform(600, 2_000)
    _crash_all_at_once(sim, crash_ms, crash_ms + draw.uniform(300, 1_500))
    return sim


def _idle(seed: int, wipe: int | None) -> Simulation:
    sim = _bank(seed)
    draw = _schedule(seed)
    crash_ms = draw.uniform(600, 2_000)
    restart_ms = crash_ms + draw.uniform(300, 1_500)
    # Clients stop submitting shortly before the crash, so that nothing is outstanding when
    # the replicas restart: they must catch up without any request to order.
    sim.at(crash_ms - 200, lambda s: s.pause_clients(restart_ms + IDLE_MS), fault=False)
    _crash_all_at_once(sim, crash_ms, restart_ms, wipe=wipe)
    return sim


@_recovery("recovery_bank_crash_all_idle", "bank with reads: clients pause, all replicas crash "
                                           "and restart, and nothing is submitted for 15 s: "
                                           "every replica must catch up within 5 s",
           linearizability=check_bank, catch_up_bound_ms=IDLE_CATCH_UP_BOUND_MS)
def _crash_all_idle(seed: int) -> Simulation:
    return _idle(seed, wipe=None)


@_recovery("recovery_bank_crash_all_idle_wiped", "as recovery_bank_crash_all_idle, one replica "
                                                 "(by seed) restarting with a wiped disk",
           linearizability=check_bank, catch_up_bound_ms=IDLE_CATCH_UP_BOUND_MS)
def _crash_all_idle_wiped(seed: int) -> Simulation:
    return _idle(seed, wipe=seed % 4)


@_recovery("recovery_bank_crash_all_reads_at_restart", "bank with reads, 5-40 ms latency, "
                                                     "checkpoints every 16: clients pause just "
                                                     "before all replicas crash and resume as "
                                                     "they restart: reads reach recovering replicas",
           linearizability=check_bank)
def _crash_all_reads_at_restart(seed: int) -> Simulation:
    sim = _bank(seed, network=NetworkProfile(5, 40),
                config_overrides={"checkpoint_interval": 16, "log_window": 64})
    draw = _schedule(seed)
    crash_ms = draw.uniform(600, 2_000)
    restart_ms = crash_ms + draw.uniform(300, 1_500)
    resume_ms = restart_ms + draw.uniform(0, 5)
    sim.at(crash_ms - 200, lambda s: s.pause_clients(resume_ms), fault=False)
    _crash_all_at_once(sim, crash_ms, restart_ms)
    return sim


@_recovery("recovery_bank_crash_all_duplication", "bank with reads, 20% of messages duplicated "
                                                  "and 2% lost until 2 s after the restart: all "
                                                  "replicas crash at once and restart",
           linearizability=check_bank)
def _crash_all_duplication(seed: int) -> Simulation:
    sim = _bank(seed, network=NetworkProfile(1, 10, loss=0.02, duplication=0.2))
    draw = _schedule(seed)
    crash_ms = draw.uniform(600, 2_000)
    restart_ms = crash_ms + draw.uniform(300, 1_500)
    _crash_all_at_once(sim, crash_ms, restart_ms)
    sim.at(restart_ms + 2_000, lambda s: s.network.heal())
    return sim


@_recovery("recovery_bank_wiped_primary_duplication", "bank with reads, 20% of messages "
                                                      "duplicated: the primary is cut off for "
                                                      "1.5 s (a view change), then all replicas "
                                                      "crash and the primary of the latest view "
                                                      "restarts with a wiped disk",
           linearizability=check_bank)
def _wiped_primary_duplication(seed: int) -> Simulation:
    sim = _bank(seed, network=NetworkProfile(1, 10, duplication=0.2))
    draw = _schedule(seed)
    cut_ms = draw.uniform(200, 600)
    crash_ms = cut_ms + 1_500 + draw.uniform(500, 1_500)
    restart_ms = crash_ms + draw.uniform(300, 1_500)
    cut = {}
    sim.at(cut_ms, lambda s: cut.update(primary=s.network.isolate(0, [1, 2, 3])))
    sim.at(cut_ms + 1_500, lambda s: s.network.heal(cut["primary"]))

    def crash(s: Simulation) -> None:
        cut["wipe"] = max(r.view for r in s.replicas) % len(s.replicas)
        for r in range(len(s.replicas)):
            s.crash(r)

    def restart(s: Simulation) -> None:
        for r in range(len(s.replicas)):
            s.restart(r, wipe=r == cut["wipe"])

    sim.at(crash_ms, crash)
    sim.at(restart_ms, restart)
    sim.at(restart_ms + 2_000, lambda s: s.network.heal())
    return sim


@_recovery("recovery_bank_partitions_healed_one_by_one", "bank with reads: the replicas are cut "
                                                         "into {0, 1} | {2} | {3}; the two "
                                                         "partitions heal one at a time, then "
                                                         "all replicas crash and restart",
           linearizability=check_bank)
def _partitions_one_by_one(seed: int) -> Simulation:
    sim = _bank(seed)
    draw = _schedule(seed)
    cut_ms = draw.uniform(300, 800)
    parts = {}

    def cut(s: Simulation) -> None:
        parts[2] = s.network.isolate(2, [0, 1, 3])
        parts[3] = s.network.partition([3], [0, 1])

    first = 2 + seed % 2
    sim.at(cut_ms, cut)
    sim.at(cut_ms + 1_500, lambda s: s.network.heal(parts[first]))
    sim.at(cut_ms + 3_000, lambda s: s.network.heal(parts[5 - first]))
    _crash_all_at_once(sim, cut_ms + 3_500, cut_ms + 4_000)
    return sim


def _write_then_read(client: int, index: int, rng: random.Random) -> tuple[bytes, bool]:
    """A transfer, then a read of the balances (read-only), and so on."""
    if index % 2:
        return balances(), True
    source, destination = rng.sample(range(5), 2)
    return transfer(f"{client}.{index}", source, destination, rng.randint(1, 60)), False


@_recovery("recovery_bank_late_commits_lagging_reads", "bank, each client a transfer then a "
                                                       "read: COMMITs reach backups 2 and 3 "
                                                       "150-300 ms late and backup 1 answers "
                                                       "reads from its state of 250 ms before "
                                                       "(no crash)",
           linearizability=check_bank, catch_up_bound_ms=None)
def _late_commits_lagging_reads(seed: int) -> Simulation:
    sim = Simulation(seed=seed, clients=2, requests_per_client=30, think_ms=150.0,
                     app_factory=Bank, make_operation=_write_then_read,
                     behaviours={1: LaggingReads(behind_ms=250)})
    sim.at(0, lambda s: s.network.slow_down(Commit, 150, 300, destinations=[2, 3]))
    sim.at(8_000, lambda s: s.network.heal())
    return sim


# ------------------------------------------------------------------ an application that raises

#: The operation `PoisonedStore.execute` raises on.
POISON = b"\xc1poison"  # 0xc1 is never valid msgpack: the store alone would call it malformed


class PoisonError(RuntimeError):
    """What `PoisonedStore` raises: an application bug triggered by one request."""


class PoisonedStore(KeyValueStore):
    """The key-value store with a bug: `execute` raises on `POISON` (before changing
    anything, as the `StateMachine` contract asks of an `execute` that raises)."""

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        if operation == POISON:
            raise PoisonError("the application cannot handle this request")
        return super().execute(operation, context)


def _poisoned_workload(client: int, index: int, rng: random.Random) -> tuple[bytes, bool]:
    """Appends to three keys, a third read-only gets, and one in ten operations of client 0
    the poison request."""
    if client == 0 and index % 10 == 5:
        return POISON, False
    key = f"key-{rng.randrange(3)}"
    if rng.random() < 0.3:
        return kv_get(key), True
    return kv_append(key, b"%d.%d;" % (client, index)), False


@_recovery("recovery_poison", "a key-value store whose execute raises on one operation that a "
                              "correct client sends now and then (with reads): the service "
                              "must go on", catch_up_bound_ms=None)
def _poison(seed: int) -> Simulation:
    return Simulation(seed=seed, clients=CLIENTS, requests_per_client=40, think_ms=THINK_MS,
                      app_factory=PoisonedStore, make_operation=_poisoned_workload)


@_recovery("recovery_poison_crash_all", "the poisoned store (as recovery_poison), and all "
                                        "replicas crash and restart after the first poison "
                                        "request: recovery replays it")
def _poison_crash_all(seed: int) -> Simulation:
    sim = Simulation(seed=seed, clients=CLIENTS, requests_per_client=40, think_ms=THINK_MS,
                     app_factory=PoisonedStore, make_operation=_poisoned_workload)
    draw = _schedule(seed)
    crash_ms = draw.uniform(800, 1_500)
    _crash_all_at_once(sim, crash_ms, crash_ms + draw.uniform(300, 1_000))
    return sim
