"""Command line of the simulator.

    python -m simulations list
    python -m simulations transcript [NAME|all] [--write]
    python -m simulations run SCENARIO --seed N [--json] [--save-replay]
    python -m simulations sweep [--scenarios all|a,b] --seeds 1-500 [--workers N] [--ray A] [--json]
                                  [--csv F]
    python -m simulations replay FILE
    python -m simulations mutants [--fast] [--seeds 1-5] [--workers N] [--only a,b]
    python -m simulations experiment FILE.toml [--quick] [--workers N | --ray ADDRESS] [--out D]
    python -m simulations plot RESULTS [--format png|svg|both] [--out D]

A failing run writes a replay file and prints the one command that replays it (`run
--save-replay` writes one for any run). A run that raises (in the core, a behaviour, the
scenario's set-up or a checker) is a finding like a violation, with its replay file: a sweep
goes on with the next run.

Exit status:
  0  every run was safe and live
  1  violations found (no run crashed)
  2  usage error (bad arguments, unknown scenario)
  3  a run crashed (an exception inside it: checker "invariant" or "crash")
  141  the reader of the output went away (`--json | head`): the command stops quietly, as
     one killed by SIGPIPE would
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .experiment import Experiment, ExperimentError, parse_seeds
from .results import RunResult, crashed
from .scenarios import CATALOGUE

REPLAY_DIR = Path("replays")
#: Exit statuses (see the module docstring).
EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE, EXIT_CRASHED = 0, 1, 2, 3
#: Not 1: that would claim violations were found.
EXIT_BROKEN_PIPE = 128 + 13


WORKERS_HELP = "local processes (default: the CPU count); with --ray local, Ray's CPUs"


class UsageError(Exception):
    """Bad command-line input (exit status 2)."""


def _scenarios(text: str) -> list[str]:
    """The scenarios named; `all` is the catalogue without its negative controls (scenarios
    that must be flagged, `Scenario.expect_violation`: run them by name)."""
    if text == "all":
        return [name for name, entry in CATALOGUE.items() if entry.expect_violation is None]
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise UsageError(f"unknown scenario(s): {', '.join(unknown)} (see: python -m simulations list)")
    return names


def write_replay(result: RunResult, schedule: list | None = None) -> Path:
    """Save what is needed to replay a failing run; return the file's path."""
    REPLAY_DIR.mkdir(exist_ok=True)
    path = REPLAY_DIR / f"{result.scenario}-seed{result.seed}.json"
    document = {"scenario": result.scenario, "seed": result.seed,
                "trace_hash": result.trace_hash,
                "violations": [v.as_dict() for v in result.violations]}
    if schedule is not None:
        document["schedule"] = schedule
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _ok(result: RunResult) -> bool:
    return not result.violations


def run_guarded(name: str, seed: int) -> RunResult:
    """`run_scenario`, but an exception anywhere (the scenario's set-up, a checker; inside the
    run `run_scenario` reports it itself, as "invariant") is returned as a "crash" violation
    with where it was raised, never raised (`experiment.run_job`, as in a sweep)."""
    from .experiment import run_job

    return RunResult.from_dict(run_job((0, 0, {"scenario": name}, seed), measured=False)["result"])


def _summary_line(result: RunResult) -> str:
    status = "ok" if _ok(result) else "VIOLATION"
    return (f"{result.scenario} seed={result.seed} {status} committed={result.committed} "
            f"faulty={result.faulty} liveness={result.liveness} virtual={result.virtual_s:.2f}s "
            f"wall={result.wall_s:.2f}s events={result.events} trace={result.trace_hash}")


def _report_failure(result: RunResult) -> None:
    path = write_replay(result)
    for v in result.violations:
        where = f" at sequence {v.sequence}" if v.sequence is not None else ""
        print(f"  {v.checker}{where} replicas {list(v.replicas)}: {v.message}", file=sys.stderr)
    print(f"replay: python -m simulations replay {path}", file=sys.stderr)


def cmd_list(_: argparse.Namespace) -> int:
    from .tables import Column, show

    # No header: one scenario a line, its name first (`list | cut -d' ' -f1`).
    show([Column("scenario"), Column("description")],
         [(name, entry.description) for name, entry in CATALOGUE.items()], header=False)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.scenario not in CATALOGUE:
        print(f"unknown scenario {args.scenario!r} (see: python -m simulations list)",
              file=sys.stderr)
        return 2
    result = run_guarded(args.scenario, args.seed)
    print(json.dumps(result.as_dict()) if args.json else _summary_line(result))
    if not _ok(result):
        _report_failure(result)
        return EXIT_CRASHED if crashed(result.violations) else EXIT_VIOLATIONS
    if args.save_replay:
        print(f"replay: python -m simulations replay {write_replay(result)}", file=sys.stderr)
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """The catalogue × seeds, on the executors of `experiment` (one way to run many
    simulations): local processes (--workers) or Ray (--ray)."""
    from .experiment_exec import executor_for, progress_bar

    jobs = [(i, i, {"scenario": name}, seed) for i, (name, seed) in enumerate(
        (name, seed) for name in _scenarios(args.scenarios) for seed in parse_seeds(args.seeds))]
    executor = executor_for(args.ray, args.workers)
    started = time.perf_counter()
    by_job: dict[int, dict] = {}
    with progress_bar(len(jobs), f"sweep ({executor.describe()})") as bar:
        for entry in executor.run(jobs, measured=False):
            row = by_job[entry["job"]] = entry["result"]
            if args.json:
                print(json.dumps(row), flush=True)
            if row["violations"]:
                result = RunResult.from_dict(row)
                print(f"\n{_summary_line(result)}", file=sys.stderr)
                _report_failure(result)
            bar.advance()
    rows = [by_job[i] for i in sorted(by_job)]
    wall_s = time.perf_counter() - started
    with open(args.csv, "w", newline="") as f:
        fields = ["scenario", "seed", "replicas", "faulty", "committed", "violations", "liveness",
                  "virtual_s", "wall_s", "events", "deliveries", "trace_hash"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "faulty": " ".join(map(str, row["faulty"])),
                             "violations": len(row["violations"])})
    failing = [r for r in rows if r["violations"]]
    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    if not args.json:
        from .tables import Column, show

        show([Column("scenario"), *(Column(h, right=True) for h in (
            "runs", "violations", "live", "committed", "virtual s", "wall s"))],
             [(name, len(group), sum(1 for r in group if r["violations"]),
               sum(1 for r in group if r["liveness"]), sum(r["committed"] for r in group),
               f"{sum(r['virtual_s'] for r in group):.1f}",
               f"{sum(r['wall_s'] for r in group):.1f}")
              for name, group in by_scenario.items()])
        print(f"{len(rows)} runs, {len(failing)} with violations, {wall_s:.1f} s wall; "
              f"every run in {args.csv}")
    summary = {"summary": True, "runs": len(rows), "failing": len(failing),
               "scenarios": len(by_scenario), "wall_s": round(wall_s, 2), "csv": args.csv}
    if args.json:
        print(json.dumps(summary))
    if any(crashed(r["violations"]) for r in failing):
        return EXIT_CRASHED
    return EXIT_VIOLATIONS if failing else EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    try:
        document = json.loads(Path(args.file).read_text())
    except OSError as error:
        raise UsageError(f"cannot read replay file {args.file}: {error.strerror}") from None
    except ValueError as error:
        raise UsageError(f"replay file {args.file} is not JSON: {error}") from None
    if not (isinstance(document, dict) and isinstance(document.get("scenario"), str)
            and type(document.get("seed")) is int):
        raise UsageError(f"replay file {args.file}: expected a JSON object with a scenario "
                         "name and an integer seed (as a failing run writes it)")
    name, seed = document["scenario"], document["seed"]
    if "schedule" not in document and name not in CATALOGUE:
        raise UsageError(f"unknown scenario {name!r} in {args.file}")
    if "schedule" in document:
        from .search import replay_schedule

        if not (isinstance(document["schedule"], list)
                and all(isinstance(entry, dict) for entry in document["schedule"])):
            raise UsageError(f"replay file {args.file}: schedule is not a list of faults")
        try:
            result = replay_schedule(document)
        except (KeyError, ValueError, TypeError) as error:  # a hand-edited schedule
            raise UsageError(f"replay file {args.file}: bad schedule: {error!r}") from None
    else:
        result = run_guarded(name, seed)
    print(_summary_line(result))
    expected = document.get("trace_hash")
    if expected and expected != result.trace_hash:
        print(f"note: trace {result.trace_hash} differs from the recorded {expected} "
              f"(the code changed since)", file=sys.stderr)
    for v in result.violations:
        print(f"  {v.checker} at sequence {v.sequence} replicas {list(v.replicas)}: {v.message}")
    if crashed(result.violations):
        return EXIT_CRASHED
    return EXIT_VIOLATIONS if result.violations else EXIT_OK


def _point_and_seed(text: str) -> tuple[int, int]:
    try:
        point, seed = text.split(":")
        return int(point), int(seed)
    except ValueError:
        raise ExperimentError(f"--replay takes POINT:SEED (e.g. 3:7), got {text!r}") from None


def _print_summary(experiment: Experiment, summary: list[dict]) -> None:
    from .experiment_tables import parameter_columns
    from .tables import Column, show

    names = [n for n in parameter_columns(experiment) if n in experiment.grid] or ["point"]
    metrics = (("throughput_per_s", "req/s"), ("latency_p50_ms", "p50 ms"),
               ("latency_p99_ms", "p99 ms"), ("view_change_ms", "vc ms"),
               ("outage_ms", "outage ms"))
    header = [*names, "runs", "failing", *(label for _, label in metrics)]
    # Mean and half-width padded apart, so that the ± of a column line up.
    pairs = {metric: [(f"{row[f'{metric}_mean']:.1f}", f"{row[f'{metric}_ci95']:.1f}")
                      for row in summary] for metric, _ in metrics}
    widths = {metric: (max((len(m) for m, _ in column), default=0),
                       max((len(h) for _, h in column), default=0))
              for metric, column in pairs.items()}
    lines = []
    for i, row in enumerate(summary):
        cells = [str(row[n]) for n in names] + [str(row["runs"]), str(row["failing"])]
        for metric, _ in metrics:
            (mean, half), (mean_width, half_width) = pairs[metric][i], widths[metric]
            cells.append(f"{mean:>{mean_width}} ± {half:>{half_width}}")
        lines.append(cells)
    show([Column(h, right=True) for h in header], lines)


def replay_one(experiment: Experiment, point: int, seed: int) -> int:
    """Run one run of `experiment` again, in this process; print its row and violations;
    return the exit status (0, 1 violations, 3 crashed)."""
    from .experiment import run_job
    from .experiment_tables import status_of, table_rows

    points = experiment.points
    if not 0 <= point < len(points):
        raise ExperimentError(f"no point {point} in {experiment.source} (points 0-"
                              f"{len(points) - 1})")
    # Any seed: the run may come from a --seeds override.
    entry = run_job((0, point, points[point], seed))
    row = table_rows(experiment, [entry])[0]
    print(json.dumps({k: v for k, v in row.items() if k != "replay"}))
    for v in entry["result"]["violations"]:
        print(f"  {v['checker']} at sequence {v['sequence']} replicas {v['replicas']}: "
              f"{v['message']}")
    status = status_of(entry["result"]["violations"])
    return {"ok": EXIT_OK, "violation": EXIT_VIOLATIONS, "crashed": EXIT_CRASHED}[status]


def cmd_experiment(args: argparse.Namespace) -> int:
    """`python -m simulations experiment FILE.toml ...`; exit 0 (every run ok), 1 (violations),
    2 (usage: bad file or option, a missing extra), 3 (a run crashed), 130 (interrupted)."""
    from .experiment import load_experiment
    from .experiment_exec import executor_for, run_experiment

    experiment = load_experiment(args.file, quick=args.quick, seeds=args.seeds)
    if args.replay:
        return replay_one(experiment, *_point_and_seed(args.replay))
    executor = executor_for(args.ray, args.workers)
    out = Path(args.out) if args.out else Path("results") / experiment.name
    started = time.perf_counter()
    try:
        rows, summary, ran = run_experiment(experiment, executor, out, fresh=args.fresh,
                                            quick=args.quick)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the runs that finished are in {out / 'runs.jsonl'}; the same "
              f"command resumes", file=sys.stderr)
        return 130
    wall_s = time.perf_counter() - started
    _print_summary(experiment, summary)
    failing = [r for r in rows if r["status"] != "ok"]
    for row in failing:
        print(f"{row['status']}: point {row['point']} seed {row['seed']} ({row['checkers']}); "
              f"replay: {row['replay']}", file=sys.stderr)
    parquet = " runs.parquet," if (out / "runs.parquet").exists() else ""
    print(f"{len(rows)} runs ({ran} run now, {len(rows) - ran} already done), {len(failing)} "
          f"failing, {wall_s:.1f} s wall; {out}/: runs.csv,{parquet} summary.csv, "
          f"latencies.csv")
    if any(r["status"] == "crashed" for r in failing):
        return EXIT_CRASHED
    return EXIT_VIOLATIONS if failing else EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from .experiment_plot import plot_command

    return plot_command(args)


def cmd_transcript(args: argparse.Namespace) -> int:
    from .transcript import command

    return command(args.name, write=args.write)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulations", description=__doc__.splitlines()[0],
        epilog=__doc__[__doc__.index("A failing run"):],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="one scenario a line: name and description")
    transcript = commands.add_parser("transcript", help="a readable step-by-step transcript of "
                                     "a key run (tests/transcripts/NAME.txt)")
    transcript.add_argument("name", nargs="?", help="a transcript's name, or all; none: list")
    transcript.add_argument("--write", action="store_true", help="rewrite the checked-in file")
    run = commands.add_parser("run", help="run one scenario with one seed")
    run.add_argument("scenario")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--json", action="store_true")
    run.add_argument("--save-replay", action="store_true",
                     help="write a replay file also when the run passes")
    sweep = commands.add_parser("sweep", help="many scenarios × many seeds")
    sweep.add_argument("--scenarios", default="all")
    sweep.add_argument("--seeds", default="1-20")
    sweep.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    sweep.add_argument("--json", action="store_true")
    sweep.add_argument("--csv", default="sweep.csv")
    sweep.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto, local or an address")
    experiment = commands.add_parser("experiment", help="a grid of parameters × seeds from a "
                                     "TOML file: a table of runs and a summary (experiments/)")
    experiment.add_argument("file")
    experiment.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    experiment.add_argument("--ray", metavar="ADDRESS",
                            help="run on Ray: auto (the cluster running here, or RAY_ADDRESS), "
                                 "local (start one in this process), or a cluster's address")
    experiment.add_argument("--out", help="output directory (default results/NAME)")
    experiment.add_argument("--quick", action="store_true",
                            help="the file's [quick] grid and seeds (a smaller run)")
    experiment.add_argument("--seeds", help="override the file's seeds (e.g. 1-3)")
    experiment.add_argument("--fresh", action="store_true",
                            help="forget the runs already done in the output directory")
    experiment.add_argument("--replay", metavar="POINT:SEED",
                            help="run one run again, alone (the command a failing run prints)")
    plot = commands.add_parser("plot", help="the standard figures of an experiment's results")
    plot.add_argument("results", help="an experiment's output directory")
    plot.add_argument("--out", help="where to write the figures (default RESULTS/figures)")
    plot.add_argument("--format", default="png", choices=("png", "svg", "both"))
    replay = commands.add_parser("replay", help="replay a run from its replay file")
    replay.add_argument("file")
    mutants = commands.add_parser("mutants", help="mutation self-test: known bugs injected "
                                                  "into a copy of the core, each hunted down")
    mutants.add_argument("--fast", action="store_true",
                         help="a few mutants, their focused scenarios only, seeds 1-8")
    mutants.add_argument("--seeds", default=None, help="seeds per scenario (default 1-5)")
    mutants.add_argument("--workers", type=int, default=None,
                         help="local processes (default: the CPU count)")
    mutants.add_argument("--only", default="", help="comma-separated mutant names")
    args = parser.parse_args(argv)
    from .mutants import main as cmd_mutants

    handler = {"list": cmd_list, "run": cmd_run, "sweep": cmd_sweep, "replay": cmd_replay,
               "transcript": cmd_transcript, "experiment": cmd_experiment, "plot": cmd_plot,
               "mutants": cmd_mutants}[args.command]
    try:
        return handler(args)
    except (UsageError, ExperimentError) as error:
        message = f"python -m simulations {args.command}: {error}"
        _quietly(lambda: print(message, file=sys.stderr))
        return EXIT_USAGE
    except BrokenPipeError:
        _silence_output()
        return EXIT_BROKEN_PIPE


def quiet_on_closed_pipe(run: Callable[[], int | None]) -> int:
    """`run()`'s exit status (None counts as 0), its output flushed; if the reader of the
    output has gone (`... | head`), 141 with no traceback, as for `python -m simulations`."""
    try:
        status = run()
        sys.stdout.flush()
        return status or EXIT_OK
    except BrokenPipeError:
        _silence_output()
        return EXIT_BROKEN_PIPE


def _quietly(write: Callable[[], None]) -> None:
    """Write to a stream that may have no reader any more."""
    try:
        write()
    except BrokenPipeError:
        _silence_output()


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null: their reader is gone, and the interpreter's final
    flush would otherwise print a BrokenPipe traceback of its own."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):  # a stream that is not a file (a test's StringIO)
            pass
    os.close(devnull)

if __name__ == "__main__":
    sys.exit(main())
