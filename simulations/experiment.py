"""Fault-simulation experiments: a grid of parameters × seeds, one simulation per run. This
module reads the file and builds, runs and measures one run (`run_job`); its tables are
`simulations.experiment_tables`, its executors `simulations.experiment_exec`, its figures
`simulations.experiment_plot`.

An experiment is a TOML file (see `experiments/` and README, "Experiments"):

    [experiment]
    name = "view_change"
    seeds = "1-10"              # or a list of integers
    [fixed]                     # parameters of every run
    crash_replica = 0
    [grid]                      # each a list: the runs are their product × the seeds
    request_timeout_ms = [250, 500, 1000]
    loss = [0.0, 0.05]
    [quick]                     # `--quick`: replaces seeds, and grid values by name
    seeds = "1-2"
    grid = { request_timeout_ms = [500, 1000] }
    [plot]                      # what `python -m simulations plot` draws (see experiment_plot)
    figures = ["view_change"]

A run is either a catalogue scenario (`scenario = "crash_primary"`, no other parameter: the
scenario decides everything) or a simulation built from `SIMULATION_PARAMETERS` and any
`ClusterConfig` option (`request_timeout_ms`, `batch_size_max`, ...), checked by the same
checkers as every scenario (`scenarios.run_scenario`). The same file and code give the same
table: every run is a function of its parameters and seed, and the table leaves out the wall
clock. `Job`s are plain tuples, so any executor (`simulations.experiment_exec`: local
processes or Ray) can ship them.
"""

from __future__ import annotations

import dataclasses
import math
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pbft.codec import encode
from pbft.config import ClusterConfig
from pbft.messages import NewView, ViewChange

from .engine import ChainedObserver, Simulation
from .network import NetworkProfile
from .results import RunResult, Violation


class ExperimentError(Exception):
    """A bad experiment file or option: what is wrong, and where."""


# ------------------------------------------------------------------ behaviours by name


def _behaviours() -> dict[str, Callable[[Simulation, int], Any]]:
    """Every replica behaviour of the library (`simulations.byzantine`, `simulations.attacks`)
    with its default settings, by name: factories (simulation, replica id) -> behaviour."""
    from pbft.messages import Commit, PrePrepare

    from . import attacks, byzantine as b

    def others(sim: Simulation, r: int) -> tuple[int, ...]:
        return tuple(p for p in range(len(sim.replicas)) if p != r)

    return {
        "silent": lambda s, r: b.Silent(),
        "deaf": lambda s, r: b.Silent(deaf=True),
        "crash_after_5th_vote": lambda s, r: b.CrashAt(PrePrepare if r == 0 else Commit, 5),
        "equivocating_primary": lambda s, r: b.EquivocatingPrimary(),
        "wrong_digest": lambda s, r: b.WrongDigest(),
        "tampered_request": lambda s, r: b.TamperedRequest(),
        "skewed_timestamps": lambda s, r: b.SkewedTimestamps(),
        "sequence_off_by_one": lambda s, r: b.OffByOne("sequence", 1),
        "view_off_by_one": lambda s, r: b.OffByOne("view", 1),
        "phantom_votes": lambda s, r: b.PhantomVotes(),
        "forged_signatures": lambda s, r: b.ForgedSignature("impersonate"),
        "garbage_signatures": lambda s, r: b.ForgedSignature("garbage", keep_honest=False),
        "replay": lambda s, r: b.Replay(),
        "view_change_spam": lambda s, r: b.ViewChangeSpam(),
        "forged_prepared_certificate": lambda s, r: b.Compose(
            b.Silent(types=(PrePrepare,), from_ms=500), b.ForgedPreparedCertificate()),
        "forged_checkpoint_proof": lambda s, r: b.Compose(
            b.Silent(types=(PrePrepare,), from_ms=500), b.ForgedCheckpointProof()),
        "equivocating_new_view": lambda s, r: b.EquivocatingNewView(),
        "forged_new_view": lambda s, r: b.ForgedNewView(),
        "truncated_new_view": lambda s, r: b.TruncatedNewView(),
        "future_view_flood": lambda s, r: b.FutureViewFlood(),
        "false_checkpoints": lambda s, r: b.FalseCheckpoints(),
        "corrupt_state": lambda s, r: b.Compose(b.CorruptSnapshot(), b.CorruptLoggedBatches()),
        "selective_delivery": lambda s, r: b.SelectiveDelivery(),
        "votes_to_one_replica": lambda s, r: b.SelectiveDelivery(
            targets=(others(s, r)[0],), types=None, drop_replies=True),
        "twins": lambda s, r: b.Twins(peers=others(s, r)[-2:]),
        "fetch_spam": lambda s, r: b.FetchSpam(),
        "slow_state_source": lambda s, r: b.SlowStateSource(),
        "fetch_state_flood": lambda s, r: b.FetchStateFlooder(),
        "censoring_primary": lambda s, r: attacks.CensoringPrimary(s.clients[0].session.client),
        "duplicate_batch": lambda s, r: attacks.DuplicateBatchPrimary(),
        "slow_primary": lambda s, r: attacks.SlowPrimary(),
        "just_tolerable_primary": lambda s, r: attacks.JustTolerablePrimary(),
        "withhold_commits": lambda s, r: attacks.WithholdCommits(peers=others(s, r)[-1:]),
        "beyond_high_watermark": lambda s, r: attacks.BeyondHighWatermark(),
    }


#: Names of `behaviour`; "none" means every replica is correct.
BEHAVIOURS: dict[str, Callable[[Simulation, int], Any]] = _behaviours()

# ------------------------------------------------------------------ parameters

#: What a built simulation takes, with defaults (`Simulation`'s and `NetworkProfile`'s):
#: workload, network profile (latency from `latency_ms` to `latency_ms + jitter_ms`),
#: faults (`loss`/`duplication` until `heal_at_ms`, or for the whole run; a replica cut off
#: from the others for `isolate_for_ms` from `isolate_from_ms`; a replica crashing at
#: `crash_at_ms` and restarting `restart_after_ms` later, or never), a Byzantine `behaviour`
#: at `behaviour_replica`, and the run's bounds (`until_ms`, `liveness_bound_ms`).
SIMULATION_PARAMETERS: dict[str, Any] = {
    "replicas": 4, "clients": 4, "requests_per_client": 40, "think_ms": 50.0,
    "operation_bytes": 0,
    "latency_ms": 1.0, "jitter_ms": 4.0, "loss": 0.0, "duplication": 0.0, "heal_at_ms": -1,
    "isolate_replica": -1, "isolate_from_ms": 300, "isolate_for_ms": 0,
    "crash_replica": -1, "crash_at_ms": 300, "restart_after_ms": -1,
    "behaviour": "none", "behaviour_replica": 0,
    "until_ms": 120_000, "liveness_bound_ms": 30_000,
}
CONFIG_PARAMETERS = frozenset(f.name for f in dataclasses.fields(ClusterConfig)
                              if f.name not in ("replicas", "clients"))


def _check_value(name: str, value: Any) -> None:
    if name == "scenario":
        from .scenarios import CATALOGUE

        if value not in CATALOGUE:
            raise ExperimentError(f"unknown scenario {value!r} (see: python -m simulations list)")
    elif name == "behaviour":
        if value != "none" and value not in BEHAVIOURS:
            raise ExperimentError(f"unknown behaviour {value!r}; known: none, "
                                  f"{', '.join(BEHAVIOURS)}")
    elif name in SIMULATION_PARAMETERS:
        default = SIMULATION_PARAMETERS[name]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(default, (int, float)) and not numeric:
            raise ExperimentError(f"{name} must be a number, got {value!r}")
    elif name in CONFIG_PARAMETERS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ExperimentError(f"{name} (a ClusterConfig option) must be an integer, "
                                  f"got {value!r}")
    else:
        raise ExperimentError(
            f"unknown parameter {name!r}: a run takes `scenario`, or any of "
            f"{', '.join(SIMULATION_PARAMETERS)}, or a ClusterConfig option")


def check_parameters(params: dict[str, Any]) -> None:
    """Raise ExperimentError for an unknown name or a value of the wrong kind, or for a
    scenario run given other parameters (a scenario decides everything itself)."""
    for name, value in params.items():
        _check_value(name, value)
    if "scenario" in params and len(params) > 1:
        others = sorted(set(params) - {"scenario"})
        raise ExperimentError(f"a scenario run takes no other parameter (got {', '.join(others)})")


def build_simulation(params: dict[str, Any], seed: int) -> Simulation:
    """The simulation `params` (see `SIMULATION_PARAMETERS`) describe, with its faults
    scheduled. Raises ExperimentError for bad parameters; ValueError or TypeError from the
    engine or `ClusterConfig` for values they refuse (a crash in the run's set-up)."""
    check_parameters(params)
    p = {**SIMULATION_PARAMETERS, **{k: v for k, v in params.items()
                                     if k in SIMULATION_PARAMETERS}}
    overrides = {k: v for k, v in params.items() if k in CONFIG_PARAMETERS}
    make_operation = None
    if p["operation_bytes"]:
        from .attacks import sized_put

        size = int(p["operation_bytes"])

        def make_operation(c: int, i: int) -> bytes:
            return sized_put(f"key-{c % 3}", b"%d.%d;" % (c, i), size)

    network = NetworkProfile(p["latency_ms"], p["latency_ms"] + p["jitter_ms"], p["loss"],
                             p["duplication"])
    sim = Simulation(seed=seed, replicas=int(p["replicas"]), clients=int(p["clients"]),
                     requests_per_client=int(p["requests_per_client"]),
                     think_ms=float(p["think_ms"]), make_operation=make_operation,
                     network=network, config_overrides=overrides)
    n = len(sim.replicas)
    if p["behaviour"] != "none":
        replica = int(p["behaviour_replica"])
        if not 0 <= replica < n:
            raise ExperimentError(f"behaviour_replica {replica} is not a replica (n = {n})")
        sim.add_behaviour(replica, BEHAVIOURS[p["behaviour"]](sim, replica))
    if p["heal_at_ms"] >= 0:
        sim.at(p["heal_at_ms"], lambda s: s.network.heal())
    if p["isolate_replica"] >= 0 and p["isolate_for_ms"] > 0:
        victim, start = int(p["isolate_replica"]), p["isolate_from_ms"]
        cut: list = []
        sim.at(start, lambda s: cut.append(s.network.isolate(victim, list(range(n)))))
        sim.at(start + p["isolate_for_ms"], lambda s: s.network.heal(cut.pop()))
    if p["crash_replica"] >= 0:
        victim = int(p["crash_replica"])
        sim.at(p["crash_at_ms"], lambda s: s.crash(victim))
        if p["restart_after_ms"] >= 0:
            sim.at(p["crash_at_ms"] + p["restart_after_ms"], lambda s: s.restart(victim))
    return sim


# ------------------------------------------------------------------ measuring a run


class Measurements(ChainedObserver):
    """Counts what the replicas' cores send (messages and encoded bytes, one per destination,
    replies included; a Byzantine behaviour may rewrite them afterwards) and when view
    changes start and end: a view change runs from the first VIEW-CHANGE a correct replica
    sends after the last installed view to the NEW-VIEW that installs a later view. Draws
    nothing from the simulation's generator, so the run is the same with or without it."""

    def __init__(self) -> None:
        self.messages_sent = 0
        self.bytes_sent = 0
        self._view_change_from_us: int | None = None
        #: (view installed, virtual µs the view change started, µs its NEW-VIEW was sent)
        self.view_changes: list[tuple[int, int, int]] = []
        self._installed = 0

    def readied(self, replica_id: int, ready: Any) -> None:
        assert self.sim is not None, "install() first"
        now = self.sim.now_us
        correct = replica_id not in self.sim.behaviours
        for outbound in ready.messages:
            message = outbound.message
            copies = len(outbound.to)
            self.messages_sent += copies
            self.bytes_sent += copies * len(encode(message))
            kind = type(message)
            if kind is ViewChange and correct and message.new_view > self._installed:
                if self._view_change_from_us is None:
                    self._view_change_from_us = now
            elif kind is NewView and message.view > self._installed:
                started = self._view_change_from_us if self._view_change_from_us is not None \
                    else now
                self.view_changes.append((message.view, started, now))
                self._installed = message.view
                self._view_change_from_us = None
        for reply in ready.replies:
            self.messages_sent += 1
            self.bytes_sent += len(encode(reply))
        super().readied(replica_id, ready)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of `values`; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def measure(sim: Simulation, measurements: Measurements) -> dict[str, Any]:
    """The figures of a finished run: throughput of correct clients per virtual second,
    latency percentiles (ms), the longest gap between two completions of correct requests
    (what clients see of an outage), view changes and their duration, messages and bytes."""
    from .checkers import correct_throughput

    operations = [op for c in sim.clients if c.record.correct for op in c.record.operations]
    latencies = [(op[2] - op[1]) / 1000 for op in operations if op[2] is not None]
    completions = sorted(op[2] for op in operations if op[2] is not None)
    gaps = [b - a for a, b in zip(completions, completions[1:])]
    if operations and completions:
        gaps.append(completions[0] - min(op[1] for op in operations))
    durations = [(end - start) / 1000 for _, start, end in measurements.view_changes]
    return {
        "throughput_per_s": round(correct_throughput(sim), 3),
        "latency_p50_ms": round(percentile(latencies, 50), 3),
        "latency_p90_ms": round(percentile(latencies, 90), 3),
        "latency_p99_ms": round(percentile(latencies, 99), 3),
        "latency_max_ms": round(max(latencies), 3) if latencies else math.nan,
        "outage_ms": round(max(gaps) / 1000, 3) if gaps else math.nan,
        "view_changes": len(measurements.view_changes),
        "view_change_ms": round(sum(durations), 3),
        "view_change_max_ms": round(max(durations), 3) if durations else 0.0,
        "messages_sent": measurements.messages_sent,
        "bytes_sent": measurements.bytes_sent,
        "latencies_ms": [round(x, 3) for x in latencies],
    }


# ------------------------------------------------------------------ one run

#: A run to do: (position in the experiment, grid point, parameters, seed). Plain data, so
#: that executors can send it to other processes or machines.
Job = tuple[int, int, dict, int]

EMPTY_METRICS = {"throughput_per_s": 0.0, "latency_p50_ms": math.nan,
                  "latency_p90_ms": math.nan, "latency_p99_ms": math.nan,
                  "latency_max_ms": math.nan, "outage_ms": math.nan, "view_changes": 0,
                  "view_change_ms": 0.0, "view_change_max_ms": 0.0, "messages_sent": 0,
                  "bytes_sent": 0, "latencies_ms": []}


def run_job(job: Job, measured: bool = True) -> dict:
    """Run one job and return {"job", "point", "params", "seed", "result": RunResult.as_dict(),
    "metrics"}. Never raises: an exception in the set-up, the run or a checker is a "crash"
    (or "invariant") violation of the result, with where it was raised. `measured` False
    skips `Measurements` (a catalogue sweep needs only the result)."""
    from .scenarios import CATALOGUE, Scenario, _invariant_violation, run_scenario

    index, point, params, seed = job
    started = time.perf_counter()
    metrics = dict(EMPTY_METRICS)
    name = params.get("scenario", "experiment")
    try:
        if "scenario" in params:
            entry = CATALOGUE[params["scenario"]]
            sim = entry.build(seed)
        else:
            sim = build_simulation(params, seed)
            p = {**SIMULATION_PARAMETERS, **params}
            entry = Scenario("experiment", "", lambda s: sim, until_ms=p["until_ms"],
                             liveness_bound_ms=p["liveness_bound_ms"])
        observer = Measurements().install(sim) if measured else None
        result = run_scenario(entry, seed, sim)
        result.scenario = name
        if observer is not None:
            metrics = measure(sim, observer)
    except Exception as error:  # noqa: BLE001 - a crashed run is a finding, not the end
        found = _invariant_violation(error)
        result = RunResult.crash(name, seed, Violation("crash", found.message, None,
                                                       found.replicas),
                                 wall_s=time.perf_counter() - started)
    return {"job": index, "point": point, "params": params, "seed": seed,
            "result": result.as_dict(), "metrics": metrics}


# ------------------------------------------------------------------ experiment files


def parse_seeds(spec: Any) -> list[int]:
    """"1-5,9" or [1, 2, 3] -> a list of seeds; ExperimentError otherwise."""
    if isinstance(spec, list):
        if not spec or not all(isinstance(s, int) and not isinstance(s, bool) for s in spec):
            raise ExperimentError(f"seeds must be a non-empty list of integers, got {spec!r}")
        return list(spec)
    if not isinstance(spec, str):
        raise ExperimentError(f"seeds must be a string like '1-10' or a list, got {spec!r}")
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            if "-" in part:
                low, high = part.split("-", 1)
                seeds.extend(range(int(low), int(high) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ExperimentError(f"bad seeds {spec!r} (e.g. 1-20 or 1,5,9)") from None
    if not seeds:
        raise ExperimentError(f"no seeds in {spec!r}")
    return seeds


@dataclasses.dataclass
class Experiment:
    """A parsed experiment: its grid points (each a dict of parameters) and seeds."""

    name: str
    description: str
    seeds: list[int]
    fixed: dict[str, Any]
    grid: dict[str, list]
    plot: dict[str, Any]
    source: str = ""

    @property
    def points(self) -> list[dict[str, Any]]:
        """The grid's points in file order (the last grid parameter varies fastest)."""
        points: list[dict[str, Any]] = [dict(self.fixed)]
        for name, values in self.grid.items():
            points = [{**p, name: v} for p in points for v in values]
        return points

    def jobs(self) -> list[Job]:
        return [(point * len(self.seeds) + s, point, params, seed)
                for point, params in enumerate(self.points)
                for s, seed in enumerate(self.seeds)]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "seeds": self.seeds,
                "fixed": self.fixed, "grid": self.grid, "plot": self.plot,
                "source": self.source}


def load_experiment(path: str | Path, quick: bool = False, seeds: str | None = None) -> Experiment:
    """Read an experiment file. `quick`: apply its [quick] table (smaller seeds and grid);
    `seeds` overrides the seeds. Raises ExperimentError for a missing or malformed file, an
    unknown parameter or section, a grid value that is not a non-empty list, or bad seeds."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise ExperimentError(f"cannot read {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ExperimentError(f"{path} is not valid TOML: {error}") from None
    unknown = set(document) - {"experiment", "fixed", "grid", "quick", "plot"}
    if unknown:
        raise ExperimentError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} "
                              f"(expected experiment, fixed, grid, quick, plot)")
    head = document.get("experiment", {})
    fixed = dict(document.get("fixed", {}))
    grid = dict(document.get("grid", {}))
    seeds_spec = head.get("seeds", "1-5")
    if quick:
        shrink = document.get("quick", {})
        extra = set(shrink) - {"seeds", "grid", "fixed"}
        if extra:
            raise ExperimentError(f"{path}: [quick] takes seeds, grid and fixed, not "
                                  f"{', '.join(sorted(extra))}")
        seeds_spec = shrink.get("seeds", seeds_spec)
        for name, values in shrink.get("grid", {}).items():
            if name not in grid:
                raise ExperimentError(f"{path}: [quick] grid names {name!r}, not in [grid]")
            grid[name] = values
        fixed.update(shrink.get("fixed", {}))
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ExperimentError(f"{path}: grid parameter {name} must be a non-empty list, "
                                  f"got {values!r}")
        if name in fixed:
            raise ExperimentError(f"{path}: {name} is both fixed and in the grid")
    experiment = Experiment(
        name=str(head.get("name", path.stem)), description=str(head.get("description", "")),
        seeds=parse_seeds(seeds if seeds is not None else seeds_spec), fixed=fixed, grid=grid,
        plot=dict(document.get("plot", {})), source=str(path))
    for params in experiment.points:
        check_parameters(params)
    return experiment
