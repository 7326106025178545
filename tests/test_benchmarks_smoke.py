"""Benchmarks run end to end: `benchmarks/under_attack.py --quick` (issue 11's availability
benchmark) prints its table and, as its last line, the JSON object its documentation promises.

Method: run its `main` in this process with `--quick` and parse what it prints; the figures are
checked for consistency with each other, not for speed.
"""

from __future__ import annotations

import json

from benchmarks import under_attack


def test_under_attack_quick_prints_a_row_and_a_ratio_per_attack_and_the_summary(capsys):
    """Goals (a), (b), (c) of issue 11 as one table: every attack is a row with its ratio to
    the fault-free run of the same n; the summary's minimum, maximum and peak are those of the
    rows."""
    under_attack.main(["--quick"])
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    measured = list(under_attack.ATTACKS)
    assert {a.key for a in measured} == {
        "large_requests", "censoring_primary", "duplicate_batch", "slow_state_source",
        "client_key_flood", "stash_flood", "fetch_state_flood", "late_checkpoints",
        "slow_primary_accomplice"}
    assert "slow_primary_ratio_by_delay_ms" not in summary
    rows = {row["attack"]: row for row in summary["runs"] if row["attack"] != "fault-free"}
    assert set(rows) == {a.key for a in measured}
    fault_free = {row["replicas"]: row for row in summary["runs"] if row["attack"] == "fault-free"}
    assert set(fault_free) == {4, 7} and all(row["completed"] > 0 for row in fault_free.values())
    for attack in measured:
        row = rows[attack.key]
        assert row["replicas"] == attack.replicas and row["scenario"] == attack.scenario
        reference = fault_free[attack.replicas]["requests_per_s"]
        assert summary[f"ratio_{attack.key}"] == row["ratio"]
        assert abs(row["ratio"] - row["requests_per_s"] / reference) < 0.01
        assert any(line.startswith(attack.key) for line in lines)
    assert summary["min_throughput_ratio"] == min(r["ratio"] for r in rows.values())
    assert summary["max_request_wait_ms"] == max(r["max_request_wait_ms"] for r in rows.values())
    assert summary["peak_replica_bytes"] == max(r["peak_replica_bytes"] for r in rows.values())
    assert summary["virtual_s"] == 5.0


def test_under_attack_slow_primary_sweep_reports_a_ratio_per_delay(capsys):
    """The sweep measures what the guarantees leave out: one ratio per delay, in its own key,
    outside `min_throughput_ratio`."""
    under_attack.main(["--quick", "--slow-primary-sweep"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sweep = summary["slow_primary_ratio_by_delay_ms"]
    assert list(sweep) == [str(d) for d in under_attack.SLOW_PRIMARY_DELAYS_MS]
    assert all(0 <= ratio <= 1.5 for ratio in sweep.values())
    assert summary["min_throughput_ratio"] == min(
        row["ratio"] for row in summary["runs"] if row["attack"] != "fault-free")


def test_the_readme_runs_the_availability_benchmark_as_this_test_does(capsys):
    """The README's command lines for benchmarks/under_attack.py, as written, parse and run
    (with --quick added, to keep CI short): the options the README shows exist."""
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    lines = [line for line in readme.splitlines()
             if line.startswith(".venv/bin/python benchmarks/under_attack.py")]
    assert len(lines) == 2
    for line in lines:
        under_attack.main([*shlex.split(line)[2:], "--quick"])
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert ("slow_primary_ratio_by_delay_ms" in summary) == ("--slow-primary-sweep" in line)
