"""`python -m simulations plot RESULTS`: the standard figures of an experiment's results (the
directory `python -m simulations experiment` wrote), with matplotlib.

The experiment file's [plot] table lists the figures, each a `[[plot.figure]]` with a `kind`:

- "line": `y` (a summary metric, default throughput_per_s) against the grid parameter `x`, one
  line per value of `series` (optional), with its 95% confidence band over the seeds;
  `logx` puts x on a log2 axis; `yscale = "symlog"` puts y on a scale linear up to
  `linthresh` (default 10) and logarithmic beyond, so that a few ms and a few s both show;
- "latency_cdf": the distribution of every request's latency, one curve per value of `by`,
  pooled over the seeds, on the grid points matching `where` (a table of parameter values);
- "relative": `y` (default throughput_per_s) for each value of `by`, as a fraction of its value
  at `baseline` (the fault-free run), one bar per value of `series`, with the 95% interval;
  also written as a Markdown table beside the figure (same name, .md), an Aardvark-style
  table of what each behaviour costs.

Without a [plot] table: a "line" of throughput against the first grid parameter (series: the
second) and its latency CDF by the first grid parameter. Figures are PNG, SVG or both.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from .experiment import ExperimentError

METRIC_LABELS = {
    "throughput_per_s": "throughput (requests per virtual second)",
    "latency_p50_ms": "median latency (virtual ms)",
    "latency_p99_ms": "99th percentile latency (virtual ms)",
    "outage_ms": "longest gap between completions (virtual ms)",
    "view_change_ms": "time in view changes (virtual ms)",
    "view_changes": "view changes",
    "messages_sent": "messages sent",
    "bytes_sent": "bytes sent",
}


def _value(text: str) -> Any:
    """A CSV cell back as a number where it is one (ints stay ints, for labels)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _read(path: Path) -> list[dict]:
    if not path.exists():
        raise ExperimentError(f"{path} not found: is {path.parent} an experiment's output "
                              f"directory (python -m simulations experiment ... --out DIR)?")
    with path.open() as f:
        return [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def default_figures(grid: dict) -> list[dict]:
    names = list(grid)
    if not names:
        return []
    line = {"kind": "line", "name": f"throughput_vs_{names[0]}", "x": names[0],
            "y": "throughput_per_s"}
    if len(names) > 1:
        line["series"] = names[1]
    return [line, {"kind": "latency_cdf", "name": f"latency_cdf_by_{names[0]}", "by": names[0]}]


def clipped_band(means: list[float], halves: list[float]) -> tuple[list[float], list[float]]:
    """The lower and upper edges of a 95% band, the lower one clipped at 0: every metric of
    the summary is a count, a size, a duration or a rate, and a band reaching below 0 would
    claim values no run can have (Student's t is symmetric; a few seeds with one outlier make
    it wider than the mean)."""
    return ([max(0.0, m - h) for m, h in zip(means, halves)],
            [m + h for m, h in zip(means, halves)])


def _matching(row: dict, where: dict) -> bool:
    return all(row.get(k) == v for k, v in where.items())


def _series_label(name: str | None, value: Any) -> str:
    return f"{name} = {value}" if name else ""


def _line(plt: Any, figure: dict, summary: list[dict]) -> Any:
    x, y, series = figure["x"], figure.get("y", "throughput_per_s"), figure.get("series")
    where = figure.get("where", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rows = [r for r in summary if _matching(r, where)]
    groups: dict[Any, list[dict]] = {}
    for row in rows:
        groups.setdefault(row[series] if series else None, []).append(row)
    for key, group in groups.items():
        group.sort(key=lambda r: r[x])
        xs = [r[x] for r in group]
        means = [r[f"{y}_mean"] for r in group]
        halves = [r[f"{y}_ci95"] if not math.isnan(r[f"{y}_ci95"]) else 0 for r in group]
        line, = ax.plot(xs, means, marker="o", label=_series_label(series, key) or None)
        low, high = clipped_band(means, halves)
        ax.fill_between(xs, low, high, alpha=0.2, color=line.get_color(), linewidth=0)
    if figure.get("logx"):
        ax.set_xscale("log", base=2)
    if figure.get("yscale") == "symlog":
        ax.set_yscale("symlog", linthresh=figure.get("linthresh", 10))
        ax.set_ylim(bottom=0)  # its margin would otherwise add a decade of negative values
    elif figure.get("yscale") not in (None, "linear"):
        raise ExperimentError(f"figure {figure.get('name')}: yscale {figure['yscale']!r} is "
                              f"not linear or symlog")
    ax.set_xlabel(figure.get("xlabel", x))
    ax.set_ylabel(figure.get("ylabel", METRIC_LABELS.get(y, y)))
    ax.set_title(figure.get("title", f"{y} vs {x} (mean, 95% CI)"), fontsize=10)
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _latency_cdf(plt: Any, figure: dict, summary: list[dict], latencies: list[dict]) -> Any:
    by, where = figure["by"], figure.get("where", {})
    points = {r["point"]: r for r in summary if _matching(r, where)}
    curves: dict[Any, list[float]] = {}
    for sample in latencies:
        point = points.get(sample["point"])
        if point is not None:
            curves.setdefault(point[by], []).append(float(sample["latency_ms"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key in sorted(curves, key=lambda k: (isinstance(k, str), k)):
        values = sorted(curves[key])
        ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post",
                label=f"{by} = {key}")
    if figure.get("logx", True):
        ax.set_xscale("log")
    ax.set_xlabel("request latency (virtual ms)")
    ax.set_ylabel("fraction of requests")
    suffix = ", ".join(f"{k} = {v}" for k, v in where.items())
    ax.set_title(figure.get("title", f"latency CDF by {by}" + (f" ({suffix})" if suffix else "")),
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def relative_table(figure: dict, summary: list[dict]) -> list[dict]:
    """For each value of `by` other than the baseline (and each value of `series`): the mean
    of `y` as a fraction of the baseline's mean, and the 95% half-width scaled alike. Raises
    ExperimentError if no grid point has the baseline value or its mean is 0."""
    by, y, series = figure["by"], figure.get("y", "throughput_per_s"), figure.get("series")
    baseline_value = figure.get("baseline", "none")
    baseline = [r for r in summary if r[by] == baseline_value]
    if not baseline:
        raise ExperimentError(f"figure {figure.get('name')}: no grid point with {by} = "
                              f"{baseline_value!r} (the baseline)")
    reference = sum(r[f"{y}_mean"] for r in baseline) / len(baseline)
    if not reference:
        raise ExperimentError(f"figure {figure.get('name')}: the baseline's {y} is 0")
    table = []
    for row in summary:
        if row[by] == baseline_value:
            continue
        table.append({by: row[by], **({series: row[series]} if series else {}),
                      "relative": row[f"{y}_mean"] / reference,
                      "ci95": (row[f"{y}_ci95"] or 0) / reference, "failing": row["failing"],
                      "runs": row["runs"]})
    return table


def _relative(plt: Any, figure: dict, summary: list[dict]) -> tuple[Any, str]:
    by, series = figure["by"], figure.get("series")
    table = relative_table(figure, summary)
    labels = list(dict.fromkeys(r[by] for r in table))
    keys = list(dict.fromkeys(r[series] for r in table)) if series else [None]
    names = figure.get("series_names", {})
    fig, ax = plt.subplots(figsize=(7.0, 0.28 * len(labels) * max(1, len(keys)) + 1.4))
    height = 0.8 / len(keys)
    for k, key in enumerate(keys):
        rows = {r[by]: r for r in table if not series or r[series] == key}
        ys = [i + k * height for i in range(len(labels))]
        means = [rows[l]["relative"] if l in rows else 0 for l in labels]
        low, high = clipped_band(means, [rows[l]["ci95"] if l in rows else 0 for l in labels])
        below = [m - lo for m, lo in zip(means, low)]
        above = [hi - m for m, hi in zip(means, high)]
        ax.barh(ys, means, height, xerr=[below, above],
                label=names.get(str(key), _series_label(series, key)) if series else None,
                error_kw={"linewidth": 0.8})
    ax.set_yticks([i + height * (len(keys) - 1) / 2 for i in range(len(labels))], labels,
                  fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    y = figure.get("y", "throughput_per_s")
    ax.set_xlabel(figure.get("xlabel", f"{y} relative to {figure.get('baseline', 'none')}"))
    ax.set_title(figure.get("title", f"{y} under each {by}, relative to fault-free"),
                 fontsize=10)
    if series:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    lines = [f"| {by} | " + " | ".join(names.get(str(k), _series_label(series, k)) or y
                                       for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for label in labels:
        cells = []
        for key in keys:
            row = next((r for r in table if r[by] == label and (not series or r[series] == key)),
                       None)
            if row is None:
                cells.append("")
                continue
            flag = f" ({row['failing']}/{row['runs']} failing)" if row["failing"] else ""
            cells.append(f"{row['relative']:.0%} ± {row['ci95']:.0%}{flag}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return fig, "\n".join(lines) + "\n"


def draw(results: Path, out: Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Draw the figures of the experiment in `results` into `out`; return the files written.
    Raises ExperimentError if matplotlib is missing, `results` is not an experiment's output,
    or a figure names a parameter or metric the results lack."""
    from .experiment_exec import require

    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Reproducible files: no timestamps, fixed SVG ids.
    matplotlib.rcParams["svg.hashsalt"] = "pbft"
    spec_path = results / "experiment.json"
    if not spec_path.exists():
        raise ExperimentError(f"{spec_path} not found: is {results} an experiment's output "
                              f"directory?")
    spec = json.loads(spec_path.read_text())
    summary = _read(results / "summary.csv")
    figures = spec.get("plot", {}).get("figure") or default_figures(spec["grid"])
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    latencies: list[dict] | None = None
    for figure in figures:
        kind, name = figure.get("kind"), figure.get("name") or figure.get("kind")
        try:
            if kind == "line":
                fig = _line(plt, figure, summary)
            elif kind == "latency_cdf":
                if latencies is None:
                    latencies = _read(results / "latencies.csv")
                fig = _latency_cdf(plt, figure, summary, latencies)
            elif kind == "relative":
                fig, markdown = _relative(plt, figure, summary)
                (out / f"{name}.md").write_text(markdown)
                written.append(out / f"{name}.md")
            else:
                raise ExperimentError(f"figure {name}: unknown kind {kind!r} (line, "
                                      f"latency_cdf, relative)")
        except KeyError as error:
            raise ExperimentError(f"figure {name}: the results have no {error}") from None
        for fmt in formats:
            path = out / f"{name}.{fmt}"
            fig.savefig(path, dpi=110, bbox_inches="tight",
                        metadata={"Date": None} if fmt == "svg" else {"Software": None})
            written.append(path)
        plt.close(fig)
    return written


def plot_command(args: Any) -> int:
    """`python -m simulations plot RESULTS [--out DIR] [--format png|svg|both]`."""
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "figures"
    formats = ("png", "svg") if args.format == "both" else (args.format,)
    for path in draw(results, out, formats):
        print(path)
    return 0
