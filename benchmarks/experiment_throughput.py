"""Runs per second of the experiment executors (issue 17): the same grid on the local executor
with 1 worker (in this process) and 2 workers (forked processes), and on Ray started on this
machine (`ray.init(num_cpus=2)`), and the overhead each adds per run.

The grid: the simulator's default workload (n = 4, 4 clients of 40 requests, 1-5 ms links)
with 10% loss until 1 s and a crashed backup, over `--seeds` seeds (each run a few tenths of a
second of wall time, like a catalogue sweep's). Every executor runs the same jobs; the traces
must be the same (`same_traces`).

Overhead per run: `wall × workers / runs − wall_local_1 / runs`, in ms: what a run costs beyond
what it costs in this process (fork and pickling for the pool, task scheduling and transfer
for Ray), with the workers' share of the machine counted (2 workers on 2 cores: a run that
costs the same in a pool as in-process has no overhead). Ray's start (`ray_start_s`) is left
out of its rate: a cluster is started once for many experiments. On a loaded machine (the
cores shared with other work) the 2-worker figures fall short of twice the 1-worker ones.

    python benchmarks/experiment_throughput.py [--seeds 40] [--no-ray] [--quick]

Prints a table, then one JSON object as its last line: runs_per_s_local_1,
runs_per_s_local_2, runs_per_s_ray (null with --no-ray), overhead_ms_per_run_local_2,
overhead_ms_per_run_ray, ray_start_s, runs, same_traces.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from simulations.experiment import Experiment
from simulations.experiment_exec import LocalExecutor, RayExecutor

ROOT = Path(__file__).resolve().parent.parent


def grid(seeds: int) -> Experiment:
    return Experiment(
        name="bench", description="", seeds=list(range(1, seeds + 1)),
        fixed={"loss": 0.1, "heal_at_ms": 1000, "crash_replica": 2, "crash_at_ms": 300},
        grid={}, plot={})


def timed(executor, jobs) -> tuple[float, list[str]]:
    started = time.perf_counter()
    entries = sorted(executor.run(jobs), key=lambda e: e["job"])
    return time.perf_counter() - started, [e["result"]["trace_hash"] for e in entries]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40, help="runs per executor")
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out")
    parser.add_argument("--quick", action="store_true", help="8 seeds (a smoke run)")
    args = parser.parse_args(argv)
    jobs = grid(8 if args.quick else args.seeds).jobs()
    runs = len(jobs)
    measured: dict[str, tuple[float, int]] = {}
    wall_1, traces = timed(LocalExecutor(1), jobs)
    measured["local_1"] = (wall_1, 1)
    wall_2, traces_2 = timed(LocalExecutor(2), jobs)
    measured["local_2"] = (wall_2, 2)
    same = traces_2 == traces
    ray_start_s = None
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            sys.exit("Ray is not installed: pip install 'pbft[experiments]' (or --no-ray)")
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        try:
            # The first tasks start Ray's worker processes: warm them up, outside the timing.
            list(RayExecutor("auto").run(jobs[:2]))
            ray_start_s = time.perf_counter() - started
            wall_ray, traces_ray = timed(RayExecutor("auto"), jobs)
        finally:
            ray.shutdown()
        measured["ray"] = (wall_ray, 2)
        same = same and traces_ray == traces
    per_run_1 = wall_1 / runs
    print(f"{'executor':<10} {'workers':>7} {'runs':>5} {'wall s':>8} {'runs/s':>8} "
          f"{'overhead ms/run':>16}")
    summary: dict = {"runs": runs}
    for name, (wall, workers) in measured.items():
        rate = runs / wall
        overhead_ms = (wall * workers / runs - per_run_1) * 1000
        print(f"{name:<10} {workers:>7} {runs:>5} {wall:>8.2f} {rate:>8.2f} {overhead_ms:>16.1f}")
        summary[f"runs_per_s_{name}"] = round(rate, 2)
        if name != "local_1":
            summary[f"overhead_ms_per_run_{name}"] = round(overhead_ms, 1)
    summary.setdefault("runs_per_s_ray", None)
    summary.setdefault("overhead_ms_per_run_ray", None)
    summary["ray_start_s"] = None if ray_start_s is None else round(ray_start_s, 2)
    summary["same_traces"] = same
    print(f"one run in this process: {per_run_1 * 1000:.0f} ms; same traces on every "
          f"executor: {'yes' if same else 'NO'}"
          + ("" if ray_start_s is None else f"; Ray started in {ray_start_s:.1f} s"))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
