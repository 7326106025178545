"""The tables of an experiment (`simulations.experiment`): one row per run, a summary with a
mean and a 95% confidence interval per grid point, written as CSV (and Parquet with pyarrow),
and the journal of finished runs that lets an interrupted experiment resume."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pbft

from .experiment import Experiment, ExperimentError
from .results import crashed

#: The columns of the runs table after the parameters, in order. The wall clock is left out:
#: the same experiment gives the same table.
RUN_COLUMNS = ("point", "seed", "status", "trace_hash", "committed", "liveness",
               "throughput_per_s", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
               "latency_max_ms", "outage_ms", "view_changes", "view_change_ms",
               "view_change_max_ms", "messages_sent", "bytes_sent", "deliveries", "events",
               "virtual_s", "violations", "checkers", "replay")
#: The figures the summary gives a mean and a 95% confidence interval for.
SUMMARY_METRICS = ("throughput_per_s", "latency_p50_ms", "latency_p99_ms", "outage_ms",
                   "view_changes", "view_change_ms", "messages_sent", "bytes_sent")


def status_of(violations: list[dict]) -> str:
    """"crashed" (a run that raised), "violation" or "ok"."""
    if crashed(violations):
        return "crashed"
    return "violation" if violations else "ok"


def replay_command(experiment_file: str, entry: dict, quick: bool) -> str:
    """The one command that runs this run again, alone."""
    if "scenario" in entry["params"]:
        return f"python -m simulations run {entry['params']['scenario']} --seed {entry['seed']}"
    return (f"python -m simulations experiment {experiment_file}{' --quick' if quick else ''} "
            f"--replay {entry['point']}:{entry['seed']}")


def table_rows(experiment: Experiment, entries: Iterable[dict], quick: bool = False) -> list[dict]:
    """One row per run, in job order: the grid's parameters, then `RUN_COLUMNS`."""
    names = parameter_columns(experiment)
    rows = []
    for entry in sorted(entries, key=lambda e: e["job"]):
        result, metrics = entry["result"], entry["metrics"]
        row = {name: entry["params"].get(name, "") for name in names}
        row.update({
            "point": entry["point"], "seed": entry["seed"],
            "status": status_of(result["violations"]), "trace_hash": result["trace_hash"],
            "committed": result["committed"], "liveness": result["liveness"],
            **{k: v for k, v in metrics.items() if k != "latencies_ms"},
            "deliveries": result["deliveries"], "events": result["events"],
            "virtual_s": result["virtual_s"], "violations": len(result["violations"]),
            "checkers": " ".join(sorted({v["checker"] for v in result["violations"]})),
            "replay": replay_command(experiment.source, entry, quick)
            if result["violations"] else "",
        })
        rows.append(row)
    return rows


def parameter_columns(experiment: Experiment) -> list[str]:
    return [*experiment.fixed, *experiment.grid]


#: Two-sided 95% quantiles of Student's t by degrees of freedom (1-30); 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student's t over the seeds);
    NaN values (no request completed) are left out; (NaN, NaN) if none remain, and a
    half-width of 0 for a single value."""
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return mean, t * math.sqrt(variance / len(values))


def summary_rows(experiment: Experiment, rows: list[dict]) -> list[dict]:
    """Per grid point: its parameters, runs, how many failed, and mean ± 95% CI of each of
    `SUMMARY_METRICS` over its seeds."""
    names = parameter_columns(experiment)
    by_point: dict[int, list[dict]] = {}
    for row in rows:
        by_point.setdefault(row["point"], []).append(row)
    summary = []
    for point, group in sorted(by_point.items()):
        out = {name: group[0][name] for name in names}
        out.update({"point": point, "runs": len(group),
                    "failing": sum(1 for r in group if r["status"] != "ok")})
        for metric in SUMMARY_METRICS:
            mean, half = mean_ci95([float(r[metric]) for r in group])
            out[f"{metric}_mean"] = round(mean, 3)
            out[f"{metric}_ci95"] = round(half, 3)
        summary.append(out)
    return summary


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue())


def write_parquet(path: Path, rows: list[dict]) -> bool:
    """Write `rows` as Parquet if pyarrow is installed; return whether it was."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    # Every column holds one kind of value (check_parameters refuses a non-number where a
    # number goes); a grid mixing 0 and 0.05 becomes a column of floats.
    columns = {name: [row[name] for row in rows] for name in rows[0]} if rows else {}
    pq.write_table(pa.table(columns), path)
    return True


# ------------------------------------------------------------------ the journal (resuming)


def job_key(params: dict, seed: int) -> str:
    """What identifies a run across invocations: its parameters and seed (not its position,
    so that growing a grid keeps the runs already done)."""
    text = json.dumps([params, seed], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@cache
def code_fingerprint() -> str:
    """A hash of the source files of pbft/ and simulations/ (their paths and contents; not
    git's commit, as the code may run outside a checkout or with uncommitted changes): the
    runs of two invocations are comparable only if it is the same."""
    digest = hashlib.sha256()
    for package in (Path(pbft.__file__).parent, Path(__file__).parent):
        for path in sorted(package.rglob("*.py")):
            digest.update(f"{package.name}/{path.relative_to(package).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


class Journal:
    """`runs.jsonl` in the output directory: each finished run as one line, written and flushed
    as it finishes, so that an interrupted experiment resumes where it stopped. A line cut off
    by the interruption (or otherwise unreadable) is ignored: that run is done again.

    Each line records the `code` fingerprint that produced it. A journal holding a run of
    other code (or of unknown code: a line without one) is refused with an ExperimentError
    naming --fresh, so that a table never mixes the runs of two versions of the code."""

    def __init__(self, path: Path, fresh: bool = False, code: str | None = None) -> None:
        self.path = path
        self.code = code or code_fingerprint()
        self.done: dict[str, dict] = {}
        if fresh and path.exists():
            path.unlink()
        text = path.read_text() if path.exists() else ""
        others: set[str] = set()
        if text:
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    key, code = entry["key"], entry.get("code")
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                if code != self.code:
                    others.add(str(code) if code else "none recorded")
                    continue
                self.done[key] = entry
        if others:
            raise ExperimentError(
                f"{path} holds runs of other code (fingerprint {', '.join(sorted(others))}; "
                f"this code is {self.code}): the tables would mix old and new runs. Run "
                f"again with --fresh to forget them, or choose another --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a")
        if text and not text.endswith("\n"):
            # End the cut-off line, or the next entry would be glued to it and lost too.
            self._file.write("\n")

    def record(self, entry: dict) -> None:
        entry = {"key": job_key(entry["params"], entry["seed"]), "code": self.code, **entry}
        self.done[entry["key"]] = entry
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
