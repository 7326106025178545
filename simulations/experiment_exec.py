"""Executors: where the runs of an experiment or a catalogue sweep happen; and
`run_experiment`, which runs what an experiment's output directory does not hold yet.

`LocalExecutor(workers)` runs them in this process (1 worker) or in a pool of local processes;
`RayExecutor(address)` on a Ray cluster (`ray.init(address=...)`). Both yield one entry
(`experiment.run_job`'s dict) per job as it finishes, in any order; callers sort by
`entry["job"]`. A run is a function of its job alone, so every executor gives the same trace
hashes.

A run that raises is already an entry (`run_job` never raises). A worker process that dies
(a segfault, the OOM killer) breaks a local pool: the runs that were in flight are then run
again, each alone in a fresh process, and the one that kills its process again is recorded as
a "crash" with that message, so that one bad run never ends a sweep.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .experiment import ExperimentError, Job, run_job

EXTRA = "pip install 'pbft[experiments]'"


def require(module: str, purpose: str) -> Any:
    """Import an optional dependency of the `experiments` extra, or raise ExperimentError that
    names the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExperimentError(f"{purpose} needs {module}, which is not installed: {EXTRA}") \
            from None


def _died(job: Job) -> dict:
    from .experiment import EMPTY_METRICS
    from .results import RunResult, Violation

    index, point, params, seed = job
    result = RunResult.crash(params.get("scenario", "experiment"), seed, Violation(
        "crash", "the worker process running it died (killed, or the interpreter crashed)"))
    return {"job": index, "point": point, "params": params, "seed": seed,
            "result": result.as_dict(), "metrics": dict(EMPTY_METRICS)}


class LocalExecutor:
    """Runs jobs on this machine: in this process with 1 worker (so a test's monkeypatched
    catalogue is seen), else in `workers` forked processes. Raises ValueError unless
    `workers` >= 1."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers!r}")
        self.workers = workers

    def describe(self) -> str:
        return f"local, {self.workers} worker{'s' if self.workers > 1 else ''}"

    def run(self, jobs: list[Job], measured: bool = True) -> Iterator[dict]:
        if self.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield run_job(job, measured)
            return
        yield from self._pool(jobs, measured)

    def _pool(self, jobs: list[Job], measured: bool) -> Iterator[dict]:
        pending = deque(jobs)
        context = multiprocessing.get_context("fork")
        while pending:
            inflight: dict = {}
            pool = ProcessPoolExecutor(self.workers, mp_context=context)
            try:
                while pending or inflight:
                    # A bounded window of submitted jobs: a sweep of 30,000 runs does not
                    # queue 30,000 futures at once.
                    while pending and len(inflight) < 4 * self.workers:
                        job = pending.popleft()
                        inflight[pool.submit(run_job, job, measured)] = job
                    finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        entry = future.result()
                        del inflight[future]
                        yield entry
            except BrokenProcessPool:
                # One of the runs in flight killed its worker: run each alone to find it.
                for job in sorted(inflight.values()):
                    yield self._alone(job, measured, context)
            finally:
                pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _alone(job: Job, measured: bool, context: Any) -> dict:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            try:
                return pool.submit(run_job, job, measured).result()
            except BrokenProcessPool:
                return _died(job)


def _run_chunk(jobs: list[Job], measured: bool) -> list[dict]:
    return [run_job(job, measured) for job in jobs]


class RayExecutor:
    """Runs jobs as Ray tasks, a few runs per task (`chunk`, to keep Ray's per-task cost
    small against a run's). `address`: "auto" (the cluster `ray start` runs here, or
    RAY_ADDRESS), "local" (start a Ray instance in this process, `workers` CPUs), or a
    cluster's address ("ray://head:10001", "head:6379"). If Ray is already initialised in
    this process (a test, a notebook), that connection is used as it is. The workers import
    this checkout's code: its directory is put on their PYTHONPATH, so on a cluster of several
    machines the same checkout must be at the same path on every node (or the package
    installed there). A caller that initialises Ray itself gives that environment
    (`ray.init(runtime_env={"env_vars": {"PYTHONPATH": ...}})`) if its workers need it.
    Raises ExperimentError if Ray is not installed."""

    def __init__(self, address: str = "auto", workers: int | None = None,
                 chunk: int | None = None) -> None:
        self.address = address
        self.workers = workers
        self.chunk = chunk
        self.ray = require("ray", "--ray")

    def describe(self) -> str:
        return f"ray ({self.address})"

    def _connect(self) -> bool:
        ray = self.ray
        if ray.is_initialized():
            return False
        root = str(Path(__file__).resolve().parent.parent)
        runtime_env = {"env_vars": {"PYTHONPATH": root}}
        try:
            if self.address == "local":
                ray.init(num_cpus=self.workers, include_dashboard=False,
                         runtime_env=runtime_env, logging_level="WARNING", log_to_driver=False)
            else:
                ray.init(address=self.address, runtime_env=runtime_env,
                         logging_level="WARNING", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ExperimentError(f"cannot reach a Ray cluster at {self.address!r} ({error}); "
                                  f"start one with `ray start --head`, or use --ray local") \
                from None
        return True

    def run(self, jobs: list[Job], measured: bool = True) -> Iterator[dict]:
        ray = self.ray
        started_here = self._connect()
        try:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            chunk = self.chunk or max(1, min(8, len(jobs) // (4 * cpus)))
            remote = ray.remote(num_cpus=1)(_run_chunk)
            waiting = [remote.remote(jobs[i:i + chunk], measured)
                       for i in range(0, len(jobs), chunk)]
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                for entries in ray.get(done):
                    yield from entries
        finally:
            if started_here:
                ray.shutdown()


def executor_for(ray: str | None, workers: int | None) -> LocalExecutor | RayExecutor:
    """The executor the command line asks for: Ray at `ray` if given, else local processes
    (`workers`, default the machine's CPU count). Raises ExperimentError for a bad count."""
    if workers is not None and workers < 1:
        raise ExperimentError(f"--workers must be at least 1, got {workers}")
    if ray is not None:
        return RayExecutor(ray, workers)
    return LocalExecutor(workers or os.cpu_count() or 1)


@contextmanager
def progress_bar(total: int, description: str) -> Iterator[Any]:
    """A rich progress bar on stderr; `advance()` after each run. Off a terminal (CI logs) it
    prints nothing until the end, where one line sums up."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(file=sys.stderr)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        transient=False, disable=not console.is_terminal)
    task = progress.add_task(description, total=total)

    class _Bar:
        done = 0

        def advance(self) -> None:
            self.done += 1
            progress.advance(task)

    bar = _Bar()
    with progress:
        yield bar
    if not console.is_terminal:
        print(f"{description}: {bar.done}/{total} runs", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ running an experiment


def run_experiment(experiment: Any, executor: Any, out: Path, *, fresh: bool = False,
                   quick: bool = False) -> tuple[list[dict], list[dict], int]:
    """Run every job of `experiment` not already in `out`/runs.jsonl (all of them with
    `fresh`), then write the tables into `out`: runs.csv (and runs.parquet with pyarrow),
    summary.csv, latencies.csv, experiment.json. Returns (rows, summary, runs done now).
    KeyboardInterrupt propagates after the journal is closed: what finished is kept."""
    from .experiment_tables import (Journal, job_key, summary_rows, table_rows, write_csv,
                                    write_parquet)

    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out / "runs.jsonl", fresh=fresh)
    jobs = experiment.jobs()
    todo = [job for job in jobs if job_key(job[2], job[3]) not in journal.done]
    try:
        if todo:
            with progress_bar(len(todo), f"{experiment.name} ({executor.describe()})") as bar:
                for entry in executor.run(todo):
                    journal.record(entry)
                    bar.advance()
    finally:
        journal.close()
    entries = []
    for index, point, params, seed in jobs:
        entry = dict(journal.done[job_key(params, seed)])
        entry.update(job=index, point=point)
        entries.append(entry)
    rows = table_rows(experiment, entries, quick)
    summary = summary_rows(experiment, rows)
    write_csv(out / "runs.csv", rows)
    if not write_parquet(out / "runs.parquet", rows):
        (out / "runs.parquet").unlink(missing_ok=True)  # not one left from an older run
    write_csv(out / "summary.csv", summary)
    write_csv(out / "latencies.csv", [
        {"point": e["point"], "seed": e["seed"], "latency_ms": latency}
        for e in entries for latency in e["metrics"]["latencies_ms"]])
    (out / "experiment.json").write_text(json.dumps(experiment.as_dict(), indent=2) + "\n")
    return rows, summary, len(todo)
