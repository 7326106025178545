"""A hypothesis-driven search for fault schedules that break a checker (issue 4, item 7).

Hypothesis draws a seed and a *fault schedule*; the schedule is applied to a `Simulation`, the
simulation runs, and every checker judges it (`run_scenario` with the "search" scenario). A
schedule that makes a checker report a violation is a failure: hypothesis shrinks it to a
minimal one, which is saved as a replay file that `python -m simulations replay FILE` reruns,
deterministically, to the same trace hash.

    python -m simulations.search [--broken NAME] [--examples N] [--seed S] [--checker NAME ...]

A schedule is a JSON list of faults, each a dict with a "fault" key:

    {"fault": "network", "latency_ms_min": 1, "latency_ms_max": 30,
     "loss_percent": 10, "duplication_percent": 5}          the profile until the network heals
    {"fault": "byzantine", "replica": 3, "behaviour": "colluding_backup", "target": 1}
    {"at_ms": 200, "fault": "crash", "replica": 2, "torn": false}   torn: true dies in its
                next write; "votes" in its next write whose votes were sent first
    {"at_ms": 900, "fault": "restart", "replica": 2, "wipe": true}
    {"at_ms": 100, "fault": "partition", "from": [1], "to": [0, 2], "one_way": true}
    {"at_ms": 100, "fault": "clog", "from": 0, "to": 3, "for_ms": 2000}
    {"at_ms": 1500, "fault": "heal"}

Bounds (documented here, enforced by `normalise`): timed faults happen in [0, FAULT_WINDOW_MS];
at most FAULTS_MAX of them; a clog lasts at most CLOG_MS_MAX; the network profile stays within
`NetworkProfile.RANGES`; the network always heals at HEAL_AT_MS (so that liveness is judged on a
stable network). At no time are more than `faulty_max` replicas faulty (Byzantine, or crashed
and not yet restarted; f by default): a crash that would exceed it is dropped, as is a restart
of a replica that is not down, and a crash of one that is. Partitions and clogs are faults of
the network between replicas (clients are never cut off), not faults of replicas. Crashed
replicas are not restarted unless the schedule says so. The Byzantine behaviours are those of
`ADVERSARIES` (see `simulations.broken` for why the quorum bugs need one).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from pbft.core import Replica

from . import broken
from .engine import Simulation
from .results import RunResult, Violation
from .network import NetworkProfile
from .scenarios import Scenario, run_scenario

SCENARIO_NAME = "search"
FAULT_WINDOW_MS = 6_000
HEAL_AT_MS = 8_000
FAULTS_MAX = 5
CLOG_MS_MAX = 3_000
SEED_MAX = 2**16
REPLAY_DIR = Path("replays")


@dataclass(frozen=True)
class SearchSetup:
    """The simulation every schedule is applied to: small enough for hundreds of runs a
    minute, with client traffic spread over the whole fault window."""

    replicas: int = 4
    clients: int = 2
    requests_per_client: int = 20
    think_ms: float = 300.0
    until_ms: float = 60_000
    liveness_bound_ms: float = 30_000
    #: The most replicas faulty at once (Byzantine or down); None: f, as PBFT assumes.
    faulty_max: int | None = None

    @classmethod
    def from_dict(cls, row: dict | None) -> SearchSetup:
        return cls(**(row or {}))


# ------------------------------------------------------------------ adversaries


def _colluding_backup(entry: dict) -> Any:
    return broken.ColludingBackup(entry["target"])


def _equivocating_primary(entry: dict) -> Any:
    from .byzantine import EquivocatingPrimary

    return EquivocatingPrimary(entry["split"], entry["evidence_after_ms"])


#: Byzantine behaviours the search may give to one replica, with what each needs from the
#: schedule entry. A Byzantine replica counts as faulty for the whole run.
ADVERSARIES: dict[str, Callable[[dict], Any]] = {
    "colluding_backup": _colluding_backup,
    "equivocating_primary": _equivocating_primary,
}


# ------------------------------------------------------------------ drawing schedules


def _groups(replicas: int) -> st.SearchStrategy[tuple[list[int], list[int]]]:
    """Two disjoint non-empty groups of replicas; one replica alone on one side is favoured
    (isolating one replica is the partition that matters most)."""
    everyone = list(range(replicas))

    def split(side: frozenset[int]) -> st.SearchStrategy[tuple[list[int], list[int]]]:
        rest = [r for r in everyone if r not in side]
        return st.one_of(
            st.just(rest),
            st.lists(st.sampled_from(rest), min_size=1, max_size=len(rest), unique=True),
        ).map(lambda other: (sorted(side), sorted(other)))

    sides = st.one_of(
        st.sampled_from(everyone).map(lambda r: frozenset({r})),
        st.frozensets(st.sampled_from(everyone), min_size=1, max_size=replicas - 1),
    )
    return sides.flatmap(split)


def _timed_fault(replicas: int) -> st.SearchStrategy[dict]:
    at_ms = st.integers(0, FAULT_WINDOW_MS)
    replica = st.integers(0, replicas - 1)
    link = st.tuples(replica, replica).filter(lambda link: link[0] != link[1])
    return st.one_of(
        st.builds(lambda t, r, torn: {"at_ms": t, "fault": "crash", "replica": r, "torn": torn},
                  at_ms, replica, st.sampled_from((False, True, "votes"))),
        st.builds(lambda t, r, wipe: {"at_ms": t, "fault": "restart", "replica": r, "wipe": wipe},
                  at_ms, replica, st.booleans()),
        st.builds(lambda t, groups, one_way: {"at_ms": t, "fault": "partition",
                                              "from": groups[0], "to": groups[1],
                                              "one_way": one_way},
                  at_ms, _groups(replicas), st.booleans()),
        st.builds(lambda t, ab, d: {"at_ms": t, "fault": "clog", "from": ab[0], "to": ab[1],
                                    "for_ms": d},
                  at_ms, link, st.integers(0, CLOG_MS_MAX)),
        st.builds(lambda t: {"at_ms": t, "fault": "heal"}, at_ms),
    )


def _network_profile() -> st.SearchStrategy[dict]:
    low, _ = NetworkProfile.RANGES["latency_ms_min"]
    _, spread = NetworkProfile.RANGES["latency_ms_spread"]
    loss = int(NetworkProfile.RANGES["loss"][1] * 100)
    duplication = int(NetworkProfile.RANGES["duplication"][1] * 100)
    return st.builds(
        lambda lo, sp, l, d: {"fault": "network", "latency_ms_min": lo, "latency_ms_max": lo + sp,
                              "loss_percent": l, "duplication_percent": d},
        st.integers(max(1, int(low)), int(NetworkProfile.RANGES["latency_ms_min"][1])),
        st.integers(0, int(spread)), st.integers(0, loss), st.integers(0, duplication),
    )


def _adversary(replicas: int, names: Iterable[str]) -> st.SearchStrategy[dict]:
    choices = []
    replica = st.integers(0, replicas - 1)
    for name in names:
        if name == "colluding_backup":
            choices.append(st.tuples(replica, replica).filter(lambda p: p[0] != p[1]).map(
                lambda p: {"fault": "byzantine", "replica": p[0], "behaviour": "colluding_backup",
                           "target": p[1]}))
        elif name == "equivocating_primary":
            choices.append(st.builds(
                lambda r, split, after: {"fault": "byzantine", "replica": r,
                                         "behaviour": "equivocating_primary", "split": split,
                                         "evidence_after_ms": after},
                # The twin hurts most while the original is committed but not yet executed:
                # within milliseconds. Short delays are drawn as often as long ones.
                replica, st.integers(0, replicas - 1),
                st.one_of(st.integers(0, 20), st.integers(0, CLOG_MS_MAX))))
        else:
            raise ValueError(f"unknown Byzantine behaviour {name!r}")
    return st.one_of(*choices)


def fault_schedules(replicas: int = 4, *,
                    adversaries: Iterable[str] = ()) -> st.SearchStrategy[list[dict]]:
    """Schedules as documented in this module's docstring, not yet normalised: maybe a network
    profile, maybe one Byzantine replica (from `adversaries`), then up to FAULTS_MAX timed
    faults. Everything shrinks towards "no fault": no profile, no adversary, fewer faults,
    earlier times, smaller replica ids."""
    adversaries = tuple(adversaries)
    optional_adversary = (st.one_of(st.none(), _adversary(replicas, adversaries))
                          if adversaries else st.none())
    return st.builds(
        lambda network, adversary, timed: [e for e in (network, adversary) if e] + timed,
        st.one_of(st.none(), _network_profile()),
        optional_adversary,
        st.lists(_timed_fault(replicas), max_size=FAULTS_MAX),
    )


def examples(replicas: int = 4, *,
             adversaries: Iterable[str] = ()) -> st.SearchStrategy[tuple[int, list[dict]]]:
    """(simulation seed, schedule): the seed is drawn too, so it shrinks with the schedule."""
    return st.tuples(st.integers(0, SEED_MAX), fault_schedules(replicas, adversaries=adversaries))


# ------------------------------------------------------------------ applying schedules


def normalise(schedule: list[dict], replicas: int = 4, faulty_max: int | None = None) -> list[dict]:
    """The schedule that will actually run: untimed entries first (at most one network profile,
    Byzantine replicas up to `faulty_max`), then timed faults in time order (stable), without
    those that would break the bounds of the module docstring. Idempotent. Raises ValueError
    for an entry of unknown kind or out of range (a hand-edited replay file)."""
    f = (replicas - 1) // 3 if faulty_max is None else faulty_max
    network, byzantine, timed = [], [], []
    for entry in schedule:
        kind = entry.get("fault")
        if kind == "network":
            if not network:
                network.append(dict(entry))
        elif kind == "byzantine":
            _check_replica(entry["replica"], replicas)
            if entry["behaviour"] not in ADVERSARIES:
                raise ValueError(f"unknown Byzantine behaviour {entry['behaviour']!r}")
            if "target" in entry:
                _check_replica(entry["target"], replicas)
            if len(byzantine) < f and all(b["replica"] != entry["replica"] for b in byzantine):
                byzantine.append(dict(entry))
        elif kind in ("crash", "restart", "partition", "clog", "heal"):
            if not 0 <= entry["at_ms"] <= FAULT_WINDOW_MS:
                raise ValueError(f"fault at {entry['at_ms']} ms is outside [0, {FAULT_WINDOW_MS}]")
            timed.append(dict(entry))
        else:
            raise ValueError(f"unknown fault {kind!r}")
    timed.sort(key=lambda e: e["at_ms"])
    byzantine_ids = {b["replica"] for b in byzantine}
    down: set[int] = set()
    kept = []
    for entry in timed[:FAULTS_MAX]:
        kind = entry["fault"]
        if kind == "crash":
            replica = _check_replica(entry["replica"], replicas)
            if replica in down or replica in byzantine_ids or len(down | byzantine_ids) >= f:
                continue
            down.add(replica)
        elif kind == "restart":
            replica = _check_replica(entry["replica"], replicas)
            if replica not in down:
                continue
            down.discard(replica)
        elif kind == "partition":
            a, b = sorted(set(entry["from"])), sorted(set(entry["to"]) - set(entry["from"]))
            if not a or not b:
                continue
            for r in a + b:
                _check_replica(r, replicas)
            entry["from"], entry["to"] = a, b
        elif kind == "clog":
            _check_replica(entry["from"], replicas)
            _check_replica(entry["to"], replicas)
            if entry["from"] == entry["to"]:
                continue
            entry["for_ms"] = min(max(entry["for_ms"], 0), CLOG_MS_MAX)
        kept.append(entry)
    return network + byzantine + kept


def _check_replica(replica: int, replicas: int) -> int:
    if not 0 <= replica < replicas:
        raise ValueError(f"replica {replica} is not in 0..{replicas - 1}")
    return replica


def _timed_action(entry: dict) -> Callable[[Simulation], None]:
    kind = entry["fault"]
    if kind == "crash":
        torn = entry.get("torn", False)
        return lambda s: s.crash(entry["replica"], torn=bool(torn),
                                 after_early_sends=torn == "votes")
    if kind == "restart":
        # A torn crash takes the replica down only at its next write; restart it either way.
        return lambda s: s.restart(entry["replica"], wipe=entry.get("wipe", False))
    if kind == "partition":
        return lambda s: s.network.partition(entry["from"], entry["to"],
                                             one_way=entry.get("one_way", False))
    if kind == "clog":
        return lambda s: s.network.clog(entry["from"], entry["to"],
                                        s.now_us + entry["for_ms"] * 1000)
    return lambda s: s.network.heal()


def build_simulation(seed: int, schedule: list[dict], replica_class: type[Replica] = Replica,
                     setup: SearchSetup = SearchSetup()) -> Simulation:
    """A simulation with `schedule` (normalised) applied: the network profile and Byzantine
    replicas from the start, timed faults with `Simulation.at`, and the final heal."""
    schedule = normalise(schedule, setup.replicas, setup.faulty_max)
    profile = NetworkProfile()
    behaviours = {}
    for entry in schedule:
        if entry["fault"] == "network":
            profile = NetworkProfile(entry["latency_ms_min"], entry["latency_ms_max"],
                                     entry["loss_percent"] / 100,
                                     entry["duplication_percent"] / 100)
        elif entry["fault"] == "byzantine":
            behaviours[entry["replica"]] = ADVERSARIES[entry["behaviour"]](entry)
    sim = Simulation(seed=seed, replicas=setup.replicas, clients=setup.clients,
                     requests_per_client=setup.requests_per_client, think_ms=setup.think_ms,
                     network=profile, replica_class=replica_class, behaviours=behaviours)
    for entry in schedule:
        if "at_ms" in entry:
            sim.at(entry["at_ms"], _timed_action(entry))
    sim.at(HEAL_AT_MS, lambda s: s.network.heal())
    return sim


def _scenario(setup: SearchSetup) -> Scenario:
    return Scenario(SCENARIO_NAME, "a fault schedule drawn by hypothesis",
                    build=lambda seed: Simulation(seed=seed), until_ms=setup.until_ms,
                    liveness_bound_ms=setup.liveness_bound_ms)


def run_schedule(seed: int, schedule: list[dict], replica_class: type[Replica] = Replica,
                 setup: SearchSetup = SearchSetup()) -> RunResult:
    """Run one schedule and check it. An exception inside the run (a broken invariant of the
    core, STYLE 5) is reported as a violation of the "invariant" checker, not raised."""
    sim = build_simulation(seed, schedule, replica_class, setup)
    started = time.perf_counter()
    try:
        return run_scenario(_scenario(setup), seed, sim)
    except Exception as error:  # noqa: BLE001 - any crash of the run is a finding
        return RunResult(
            scenario=SCENARIO_NAME, seed=seed, replicas=len(sim.replicas),
            faulty=sorted(sim.faulty | sim.down), committed=sim.committed(),
            violations=[Violation("invariant", f"{type(error).__name__}: {error}")],
            liveness=False, virtual_s=sim.now_us / 1e6, wall_s=time.perf_counter() - started,
            events=sim.events, deliveries=sim.deliveries, trace_hash=sim.trace_hash(),
        )


# ------------------------------------------------------------------ the search


@dataclass
class Found:
    """A minimal failing schedule: what hypothesis shrank to, and its run."""

    seed: int
    schedule: list[dict]
    result: RunResult
    broken: str | None
    setup: SearchSetup = field(default_factory=SearchSetup)
    #: Runs the search made (generation and shrinking).
    runs: int = 0
    wall_s: float = 0.0

    @property
    def faults(self) -> int:
        """How many faults the minimal schedule holds (the implicit final heal not counted)."""
        return len(self.schedule)

    def document(self) -> dict:
        """The replay file's contents (`replay_schedule` reads it back)."""
        return {
            "scenario": SCENARIO_NAME, "seed": self.seed, "broken": self.broken,
            "simulation": asdict(self.setup), "schedule": self.schedule,
            "trace_hash": self.result.trace_hash,
            "violations": [v.as_dict() for v in self.result.violations],
        }


class _Failure(Exception):
    def __init__(self, seed: int, schedule: list[dict], result: RunResult) -> None:
        super().__init__(f"seed {seed}: {[v.checker for v in result.violations]}")
        self.seed, self.schedule, self.result = seed, schedule, result


def _broken_name(replica_class: type[Replica] | str | None) -> str | None:
    if replica_class is None or isinstance(replica_class, str):
        broken.replica_class(replica_class)  # KeyError for an unknown name
        return None if replica_class in (None, "", "correct") else replica_class
    if replica_class is Replica:
        return None
    for name, cls in broken.BROKEN.items():
        if cls is replica_class:
            return name
    raise ValueError(f"{replica_class.__name__} is not in simulations.broken.BROKEN: a replay "
                     "file could not name it")


def search(replica_class: type[Replica] | str | None = Replica, max_examples: int = 100,
           seed: int | None = None, *, adversaries: Iterable[str] | None = None,
           checkers: Iterable[str] | None = None,
           setup: SearchSetup = SearchSetup()) -> Found | None:
    """Search for a fault schedule under which some checker reports a violation, and shrink it.

    `replica_class` is `Replica`, a class of `simulations.broken.BROKEN` or its name. With
    `seed` None the search is derandomized (the same examples every time, for CI); otherwise
    `seed` seeds hypothesis. `adversaries` names the Byzantine behaviours a schedule may use
    (default: all of `ADVERSARIES`; `()` for benign faults only). `checkers` restricts what
    counts as a failure (default: any violation, liveness and "invariant" included). `setup`
    sizes the simulation; `setup.faulty_max` allows more than f faulty replicas at once (then
    the checkers still judge safety; liveness is not promised). Returns None if `max_examples`
    schedules found nothing. No example database is used; hypothesis prints nothing.
    """
    name = _broken_name(replica_class)
    cls = broken.replica_class(name)
    adversaries = tuple(ADVERSARIES if adversaries is None else adversaries)
    wanted = None if checkers is None else set(checkers)
    runs = 0
    started = time.perf_counter()

    def check(example: tuple[int, list[dict]]) -> None:
        nonlocal runs
        runs += 1
        seed_, raw = example
        schedule = normalise(raw, setup.replicas, setup.faulty_max)
        result = run_schedule(seed_, schedule, cls, setup)
        if any(wanted is None or v.checker in wanted for v in result.violations):
            raise _Failure(seed_, schedule, result)

    test = given(examples(setup.replicas, adversaries=adversaries))(check)
    test = settings(
        max_examples=max_examples, derandomize=seed is None, database=None, deadline=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink), report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
    )(test)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    try:
        test()
    except _Failure as failure:
        return Found(failure.seed, failure.schedule, failure.result, name, setup, runs,
                     time.perf_counter() - started)
    return None


# ------------------------------------------------------------------ replay files


def save_replay(found: Found, directory: Path = REPLAY_DIR) -> Path:
    """Write `found.document()` to `directory` (created if missing); return the path. The file
    holds everything `replay_schedule` needs; an existing file of the same name is replaced."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{SCENARIO_NAME}-{found.broken or 'correct'}-seed{found.seed}.json"
    path.write_text(json.dumps(found.document(), indent=2) + "\n")
    return path


def replay_schedule(document: dict) -> RunResult:
    """Rebuild and rerun the run a replay file describes ("seed", "schedule", and optionally
    "broken" and "simulation"; `python -m simulations replay` calls this). Same code, same
    trace hash. Raises KeyError for an unknown broken replica, ValueError for a bad schedule."""
    cls = broken.replica_class(document.get("broken"))
    setup = SearchSetup.from_dict(document.get("simulation"))
    return run_schedule(document["seed"], document["schedule"], cls, setup)


def describe(schedule: list[dict]) -> list[str]:
    """One line per fault, for people."""
    lines = []
    for e in schedule:
        kind = e["fault"]
        at = f"at {e['at_ms']:>5} ms  " if "at_ms" in e else "from the start  "
        if kind == "network":
            detail = (f"latency {e['latency_ms_min']}-{e['latency_ms_max']} ms, "
                      f"loss {e['loss_percent']}%, duplication {e['duplication_percent']}%")
        elif kind == "byzantine":
            extra = {k: v for k, v in e.items() if k not in ("fault", "replica", "behaviour")}
            detail = f"replica {e['replica']} is {e['behaviour']} {extra or ''}".rstrip()
        elif kind == "crash":
            torn = e.get("torn")
            detail = f"crash replica {e['replica']}" + (
                " (torn write after its votes were sent)" if torn == "votes"
                else " (torn write)" if torn else "")
        elif kind == "restart":
            wiped = " with a wiped disk" if e.get("wipe") else ""
            detail = f"restart replica {e['replica']}{wiped}"
        elif kind == "partition":
            arrow = "->" if e.get("one_way") else "<->"
            detail = f"partition {e['from']} {arrow} {e['to']}"
        elif kind == "clog":
            detail = f"clog {e['from']} -> {e['to']} for {e['for_ms']} ms"
        else:
            detail = "heal the network"
        lines.append(f"{at}{kind:<10} {detail}")
    lines.append(f"at {HEAL_AT_MS:>5} ms  heal       (always: the network heals)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulations.search",
        description="Search fault schedules with hypothesis; shrink and save the first failure.")
    parser.add_argument("--broken", default=None, choices=sorted(broken.BROKEN),
                        help="run a deliberately broken replica (simulations.broken) everywhere")
    parser.add_argument("--examples", type=int, default=200, help="schedules to try (default 200)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed hypothesis (default: derandomized, the same every time)")
    parser.add_argument("--checker", action="append", default=None,
                        help="only violations of this checker count (repeatable)")
    parser.add_argument("--adversary", action="append", default=None,
                        choices=sorted(ADVERSARIES),
                        help="Byzantine behaviours a schedule may use (default: all)")
    parser.add_argument("--benign", action="store_true", help="no Byzantine replica at all")
    parser.add_argument("--faulty-max", type=int, default=None,
                        help="most replicas faulty at once (default: f)")
    parser.add_argument("--replay-dir", type=Path, default=REPLAY_DIR)
    args = parser.parse_args(argv)
    adversaries = () if args.benign else args.adversary
    found = search(args.broken, args.examples, args.seed, adversaries=adversaries,
                   checkers=args.checker, setup=SearchSetup(faulty_max=args.faulty_max))
    who = args.broken or "the correct Replica"
    if found is None:
        print(f"no failing schedule for {who} in {args.examples} examples")
        return 0
    path = save_replay(found, args.replay_dir)
    print(f"{who}: minimal failing schedule (seed {found.seed}, {found.faults} fault(s), "
          f"found and shrunk in {found.runs} runs, {found.wall_s:.1f} s):")
    for line in describe(found.schedule):
        print(f"  {line}")
    for v in found.result.violations:
        where = f" at sequence {v.sequence}" if v.sequence is not None else ""
        print(f"  {v.checker}{where} replicas {list(v.replicas)}: {v.message}")
    print(f"trace {found.result.trace_hash}")
    print(f"replay: python -m simulations replay {path}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
