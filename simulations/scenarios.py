"""The catalogue of named scenarios: each builds a seeded simulation with its faults scheduled,
and `run_scenario` runs it and applies every checker.

A scenario is a function `seed -> Simulation` with a name and a one-line description; what is
random in it (latencies, which replica, when) comes from the simulation's own generator, so
`(scenario, seed)` names one run exactly.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from pbft.config import ClusterConfig
from pbft.core import Replica

from pbft.core.sizes import replica_bytes_budget

from . import checkers
from .engine import Simulation
from .results import RunResult, Violation
from .network import NetworkProfile


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    build: Callable[[int], Simulation]
    #: Seeds run in CI for this scenario.
    seeds: tuple[int, ...] = (1, 2, 3)
    #: False: registered (`python -m simulations run` and `sweep` know it) but left out of the
    #: CI sweep of the catalogue (tests/test_simulator.py), e.g. while it exposes a known bug.
    ci: bool = True
    until_ms: float = 120_000
    liveness_bound_ms: float = 30_000
    #: An application-specific checker, run after the safety checkers (which include the
    #: linearizability checker for any application); the default knows kv_append.
    linearizability: checkers.Checker = checkers.kv_append_linearizability
    #: The run stops after this many events (`Simulation.events_max`), a "runaway" violation.
    events_max: int | None = None
    #: Recovery without new load: checkers.CatchUpWatch with this bound (less than
    #: `liveness_bound_ms`, or the run may end first).
    catch_up_bound_ms: float | None = None
    # Availability oracles (issue 11), off unless a scenario asks for them:
    #: The longest a correct client's request may wait, from the configuration (typically
    #: `checkers.request_wait_bound_ms`): checkers.request_wait.
    request_wait_bound_ms: Callable[[ClusterConfig], float] | None = None
    #: The most protocol bytes a correct replica may hold, from the configuration (typically
    #: `pbft.core.sizes.replica_bytes_budget`): checkers.bytes_held, on samples taken every
    #: `memory_sample_every_ms` of virtual time.
    bytes_held_bound: Callable[[ClusterConfig], int] | None = None
    memory_sample_every_ms: float = 100
    #: What a correct replica may send one peer on request, from the configuration (typically
    #: `checkers.served_work_budget`): checkers.ServedWorkWatch.
    served_work_budget: Callable[[ClusterConfig], checkers.ServedWorkBudget] | None = None
    #: How many view changes with a correct primary are allowed: checkers.needless_view_changes.
    needless_view_changes: int | None = None
    #: `build` without the attack (same seed, same workload): correct clients must keep at
    #: least `throughput_ratio_min` of their throughput there (checkers.throughput).
    fault_free: Callable[[int], Simulation] | None = None
    throughput_ratio_min: float = 0.5
    #: A negative control (more faults than PBFT tolerates): the checker that must flag every
    #: run of it. Register it with `ci=False` as well (the CI sweep expects no violation);
    #: tests/test_sim_byzantine.py runs its seeds and asserts the checker flags each.
    expect_violation: str | None = None


CATALOGUE: dict[str, Scenario] = {}


def scenario(name: str, description: str, **options) -> Callable:
    """Register `build(seed) -> Simulation` under `name`."""

    def register(build: Callable[[int], Simulation]) -> Callable[[int], Simulation]:
        if name in CATALOGUE:
            raise ValueError(f"scenario {name!r} registered twice")
        CATALOGUE[name] = Scenario(name, description, build, **options)
        return build

    return register


def run_scenario(entry: Scenario, seed: int, simulation: Simulation | None = None) -> RunResult:
    """Run one scenario with one seed and check it. `simulation` overrides the built one (the
    hypothesis search passes its own).

    An exception inside the run (a broken invariant of the core, an application that stops a
    replica) ends the run and is reported as a violation of the "invariant" checker, with
    where it was raised; the checkers then judge what happened until then. Replicas down at
    the end are judged for safety like the other correct ones (`checkers`), and count as
    faulty for liveness and in the result."""
    sim = simulation if simulation is not None else entry.build(seed)
    if entry.bytes_held_bound is not None and not sim.samples_memory:
        sim.sample_memory(entry.memory_sample_every_ms)
    if entry.events_max is not None:
        sim.events_max = entry.events_max
    watch = None
    if entry.catch_up_bound_ms is not None:
        watch = checkers.CatchUpWatch(entry.catch_up_bound_ms).install(sim)
    served = None
    if entry.served_work_budget is not None:
        served = checkers.ServedWorkWatch(entry.served_work_budget(sim.config)).install(sim)
    violations = []
    started = time.perf_counter()
    try:
        finished = sim.run(until_ms=entry.until_ms, liveness_bound_ms=entry.liveness_bound_ms)
    except Exception as error:  # noqa: BLE001 - any crash of the run is a finding
        finished = False
        violations.append(_invariant_violation(error))
    wall_s = time.perf_counter() - started
    for check in (*checkers.SAFETY_CHECKERS, entry.linearizability):
        violations.extend(check(sim))
    violations.extend(checkers.liveness(sim, finished))
    violations.extend(checkers.runaway(sim))
    if watch is not None:
        violations.extend(watch.violations(sim))
    if served is not None:
        violations.extend(served.violations(sim))
    faulty = sorted(sim.faulty | sim.down)
    # Afterwards (availability oracles, readers of the finished run) replicas that are down
    # count as faulty: a crashed primary's view change is needed.
    sim.faulty = set(faulty)
    violations.extend(availability_violations(entry, sim, seed))
    return RunResult(
        scenario=entry.name, seed=seed, replicas=len(sim.replicas), faulty=faulty,
        committed=sim.committed(), violations=violations, liveness=finished,
        virtual_s=sim.now_us / 1e6, wall_s=wall_s, events=sim.events,
        deliveries=sim.deliveries, trace_hash=sim.trace_hash(),
    )


def _invariant_violation(error: Exception) -> Violation:
    """An exception's type and message, the replica whose code raised it (if one did), and
    the innermost frame: where, and its source line (an assert often has no message)."""
    replica = None
    tb = error.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, Replica):
            replica = owner.id
        tb = tb.tb_next
    frames = traceback.extract_tb(error.__traceback__)
    text = f"{type(error).__name__}: {error}".rstrip(": ")
    if replica is not None:
        text += f" in replica {replica}"
    if frames:
        last = frames[-1]
        text += (f" at {'/'.join(last.filename.split('/')[-2:])}:{last.lineno} ({last.name}: "
                 f"{last.line})")
    return Violation("invariant", text, replicas=() if replica is None else (replica,))


def availability_violations(entry: Scenario, sim: Simulation, seed: int) -> list:
    """The availability oracles `entry` switches on, applied to the finished `sim` (run with
    `seed`; the throughput oracle runs `entry.fault_free(seed)` for its reference)."""
    violations = []
    if entry.request_wait_bound_ms is not None:
        violations.extend(checkers.request_wait(sim, entry.request_wait_bound_ms(sim.config)))
    if entry.bytes_held_bound is not None:
        violations.extend(checkers.bytes_held(sim, entry.bytes_held_bound(sim.config)))
    if entry.needless_view_changes is not None:
        violations.extend(checkers.needless_view_changes(sim, entry.needless_view_changes))
    if entry.fault_free is not None:
        reference = entry.fault_free(seed)
        reference.run(until_ms=entry.until_ms, liveness_bound_ms=entry.liveness_bound_ms)
        violations.extend(checkers.throughput(sim, reference, entry.throughput_ratio_min))
    return violations


#: The liveness oracles of issue 11 with their bounds from the configuration, for scenarios
#: whose faults are benign (issue 14, item 2); `_REACHABLE` adds "no view change while the
#: primary is correct", for those whose primary stays reachable and up.
_ORACLES = dict(request_wait_bound_ms=checkers.request_wait_bound_ms,
                bytes_held_bound=replica_bytes_budget,
                served_work_budget=checkers.served_work_budget)
_REACHABLE = dict(_ORACLES, needless_view_changes=0)


def _sim(seed: int, **options) -> Simulation:
    return Simulation(seed=seed, **options)


# ------------------------------------------------------------------ network faults


@scenario("baseline", "no faults: 4 replicas, 4 clients, 1-5 ms latency, 40 requests each", **_REACHABLE)
def _baseline(seed: int) -> Simulation:
    return _sim(seed)


@scenario("swarm", "a network fault profile drawn from the seed (latency, loss, duplication), "
                   "healed after 5 s")
def _swarm(seed: int) -> Simulation:
    import random

    profile = NetworkProfile.draw(random.Random(seed ^ 0x5EED))
    sim = _sim(seed, network=profile)
    sim.at(5_000, lambda s: s.network.heal())
    return sim


@scenario("batching", "no faults, with a 30 ms batching delay at the primary (N2): fewer, "
                      "fuller batches")
def _batching(seed: int) -> Simulation:
    return _sim(seed, config_overrides={"batch_delay_ms": 30})


@scenario("batching_lossy_primary_cut", "30 ms batching delay, 10% loss until 5 s, and the "
                                        "primary cut off from 1 s to 5 s: a view change while "
                                        "batches wait")
def _batching_lossy(seed: int) -> Simulation:
    sim = _sim(seed, network=NetworkProfile(1, 20, loss=0.1, duplication=0.0),
               config_overrides={"batch_delay_ms": 30})
    sim.at(1_000, lambda s: s.network.isolate(0, [1, 2, 3]))
    sim.at(5_000, lambda s: s.network.heal())
    return sim


@scenario("lossy", "10% loss and 10% duplication on every link until 5 s")
def _lossy(seed: int) -> Simulation:
    sim = _sim(seed, network=NetworkProfile(1, 20, loss=0.1, duplication=0.1))
    sim.at(5_000, lambda s: s.network.heal())
    return sim


# Not _REACHABLE: the cut-off backup's own request timer asks for view 1 (a lone view change).
@scenario("partition_backup", "backup 3 cut off from everyone for 4 s, then healed", **_ORACLES)
def _partition_backup(seed: int) -> Simulation:
    sim = _sim(seed)
    nodes = list(range(4))
    sim.at(200, lambda s: s.network.isolate(3, nodes))
    sim.at(4_200, lambda s: s.network.heal())
    return sim


@scenario("partition_primary", "the primary cut off from the other replicas for 6 s: a view "
                               "change, then healing", **_ORACLES)
def _partition_primary(seed: int) -> Simulation:
    sim = _sim(seed)
    sim.at(300, lambda s: s.network.isolate(0, [1, 2, 3]))
    sim.at(6_300, lambda s: s.network.heal())
    return sim


@scenario("one_way_partition", "the primary hears nothing from the backups for 5 s (it can "
                               "still send)", **_ORACLES)
def _one_way(seed: int) -> Simulation:
    sim = _sim(seed)
    sim.at(300, lambda s: s.network.partition([1, 2, 3], [0], one_way=True))
    sim.at(5_300, lambda s: s.network.heal())
    return sim


@scenario("clogged_link", "the links from the primary to two backups hold messages for 3 s", **_ORACLES)
def _clogged(seed: int) -> Simulation:
    sim = _sim(seed)

    def clog(s: Simulation) -> None:
        for backup in (1, 2):
            s.network.clog(0, backup, s.now_us + 3_000_000)

    sim.at(300, clog)
    return sim


# ------------------------------------------------------------------ crashes


@scenario("crash_backup_restart", "a backup crashes, misses 3 s, recovers from its records", **_REACHABLE)
def _crash_backup(seed: int) -> Simulation:
    sim = _sim(seed)
    victim = 1 + seed % 3
    sim.at(300, lambda s: s.crash(victim))
    sim.at(3_300, lambda s: s.restart(victim))
    return sim


@scenario("crash_primary", "the primary crashes for good: a view change, then progress", **_ORACLES)
def _crash_primary(seed: int) -> Simulation:
    sim = _sim(seed)
    sim.at(300, lambda s: s.crash(0))
    return sim


@scenario("crash_torn_write", "a replica dies in the middle of a write (torn last record) and "
                              "recovers", **_ORACLES)
def _crash_torn(seed: int) -> Simulation:
    sim = _sim(seed)
    victim = seed % 4
    sim.at(400, lambda s: s.crash(victim, torn=True))
    sim.at(3_000, lambda s: s.restart(victim) if victim in s.down else None)
    return sim


@scenario("crash_wipe_disk", "a backup loses its disk and rejoins by state transfer", **_REACHABLE)
def _crash_wipe(seed: int) -> Simulation:
    sim = _sim(seed)
    victim = 1 + seed % 3
    sim.at(300, lambda s: s.crash(victim))
    sim.at(3_000, lambda s: s.restart(victim, wipe=True))
    return sim


@scenario("crash_all_restart", "all four replicas crash at once mid-load and restart from "
                               "their records", **_ORACLES)
def _crash_all(seed: int) -> Simulation:
    sim = _sim(seed)

    def crash_all(s: Simulation) -> None:
        for r in range(4):
            s.crash(r)

    def restart_all(s: Simulation) -> None:
        for r in range(4):
            s.restart(r)

    sim.at(500, crash_all)
    sim.at(1_500, restart_all)
    return sim


@scenario("crash_three_primaries", "n = 10, f = 3: primaries 0, 1 and 2 crash; view 3 leads")
def _three_primaries(seed: int) -> Simulation:
    sim = _sim(seed, replicas=10, requests_per_client=20)

    def crash(s: Simulation) -> None:
        for r in (0, 1, 2):
            s.crash(r)

    sim.at(300, crash)
    return sim
@scenario("byz_preparing_primary", "the primary also sends a signed PREPARE for each of its "
                                   "PRE-PREPAREs (N4 counts backups only)")
def _preparing_primary(seed: int) -> Simulation:
    from .broken import PreparingPrimary

    return _sim(seed, behaviours={0: PreparingPrimary()})


from . import scenarios_byzantine  # noqa: F401
from . import scenarios_trade  # noqa: F401
from . import scenarios_attacks  # noqa: F401
from . import scenarios_recovery  # noqa: F401
