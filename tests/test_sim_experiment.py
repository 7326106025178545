"""Experiments (issue 17): a TOML grid × seeds gives one deterministic table of runs, resumes
where it stopped, records failing and crashing runs with their replay command, runs the same
on every executor (one process, a local pool, Ray), and plots its figures. Method: small grids
(2 clients, a few requests) run through the public functions and the command line."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

import simulations.experiment_exec as exec_module
from simulations import experiment as ex
from simulations import experiment_tables as tables
from simulations.__main__ import main
from simulations.experiment_exec import LocalExecutor, run_experiment
from simulations.experiment_plot import relative_table

ROOT = Path(__file__).resolve().parent.parent

SMALL = """
[experiment]
name = "small"
seeds = "1-2"
[fixed]
clients = 2
requests_per_client = 5
[grid]
loss = [0.0, 0.1]
request_timeout_ms = [500, 1000]
[quick]
seeds = "3"
grid = { loss = [0.0] }
"""


def _write(tmp_path: Path, text: str = SMALL, name: str = "small.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ the file


def test_a_grid_is_the_product_of_its_values_times_the_seeds(tmp_path):
    experiment = ex.load_experiment(_write(tmp_path))
    assert experiment.points == [
        {"clients": 2, "requests_per_client": 5, "loss": loss, "request_timeout_ms": timeout}
        for loss in (0.0, 0.1) for timeout in (500, 1000)]
    jobs = experiment.jobs()
    assert [(job[1], job[3]) for job in jobs] == [(p, s) for p in range(4) for s in (1, 2)]
    assert [job[0] for job in jobs] == list(range(8))


def test_quick_replaces_the_seeds_and_the_grid_values_it_names(tmp_path):
    experiment = ex.load_experiment(_write(tmp_path), quick=True)
    assert experiment.seeds == [3]
    assert experiment.grid == {"loss": [0.0], "request_timeout_ms": [500, 1000]}
    assert ex.load_experiment(_write(tmp_path), seeds="4-5").seeds == [4, 5]


@pytest.mark.parametrize("text, message", [
    ("[grid]\nno_such = [1]\n", "unknown parameter 'no_such'"),
    ("[grid]\nbehaviour = ['sneaky']\n", "unknown behaviour 'sneaky'"),
    ("[grid]\nscenario = ['no_such']\n", "unknown scenario 'no_such'"),
    ("[grid]\nloss = 0.1\n", "must be a non-empty list"),
    ("[grid]\nloss = []\n", "must be a non-empty list"),
    ("[fixed]\nloss = 'high'\n", "loss must be a number"),
    ("[fixed]\nbatch_size_max = 2.5\n", "batch_size_max (a ClusterConfig option) must be an "
                                        "integer"),
    ("[fixed]\nloss = 0.1\n[grid]\nloss = [0.2]\n", "both fixed and in the grid"),
    ("[fixed]\nscenario = 'baseline'\nloss = 0.1\n", "a scenario run takes no other parameter"),
    ("[experiment]\nseeds = 'x-y'\n", "bad seeds"),
    ("[experiment]\nseeds = []\n", "seeds must be a non-empty list"),
    ("[grids]\nloss = [0.1]\n", "unknown section(s) grids"),
    ("[quick]\ngrid = { loss = [0.1] }\n", "[quick] grid names 'loss', not in [grid]"),
    ("[quick]\nseed = '1'\n", "[quick] takes seeds, grid and fixed, not seed"),
    ("[grid\n", "not valid TOML"),
])
def test_a_bad_experiment_file_is_refused_with_what_is_wrong(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ex.ExperimentError) as raised:
        ex.load_experiment(path, quick="[quick]" in text)
    assert message in str(raised.value)
    assert main(["experiment", str(path), "--out", str(tmp_path / "out")]
                + (["--quick"] if "[quick]" in text else [])) == 2
    assert message in capsys.readouterr().err


def test_a_missing_file_and_a_bad_worker_count_are_usage_errors(tmp_path, capsys):
    assert main(["experiment", str(tmp_path / "none.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["experiment", str(_write(tmp_path)), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers must be at least 1"):
        LocalExecutor(0)


def test_every_named_behaviour_installs_on_a_built_simulation():
    """The behaviour catalogue of the experiments: each factory builds its behaviour at a
    backup, with the library's defaults, and the replica counts as faulty."""
    for name in ex.BEHAVIOURS:
        sim = ex.build_simulation({"behaviour": name, "behaviour_replica": 1}, seed=1)
        assert sim.faulty == {1} and 1 in sim.behaviours, name
    with pytest.raises(ex.ExperimentError, match="behaviour_replica 4 is not a replica"):
        ex.build_simulation({"behaviour": "silent", "behaviour_replica": 4}, seed=1)


# ------------------------------------------------------------------ runs and tables


def test_the_same_file_gives_the_same_table_with_one_worker_or_two(tmp_path):
    path = _write(tmp_path)
    assert main(["experiment", str(path), "--workers", "1", "--out", str(tmp_path / "a")]) == 0
    assert main(["experiment", str(path), "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    table = (tmp_path / "a" / "runs.csv").read_text()
    assert table == (tmp_path / "b" / "runs.csv").read_text()
    rows = _rows(tmp_path / "a" / "runs.csv")
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    # Each row is the run its parameters and seed name: the engine gives the same trace.
    first = ex.run_job((0, 0, {"clients": 2, "requests_per_client": 5, "loss": 0.0,
                               "request_timeout_ms": 500}, 1))
    assert rows[0]["trace_hash"] == first["result"]["trace_hash"]
    assert int(rows[0]["committed"]) == 10 and float(rows[0]["throughput_per_s"]) > 0
    assert float(rows[0]["latency_p50_ms"]) <= float(rows[0]["latency_p99_ms"])
    assert int(rows[0]["messages_sent"]) > 0 and int(rows[0]["bytes_sent"]) > 0
    assert "wall_s" not in rows[0]
    summary = _rows(tmp_path / "a" / "summary.csv")
    assert [(s["loss"], s["request_timeout_ms"], s["runs"]) for s in summary] == [
        ("0.0", "500", "2"), ("0.0", "1000", "2"), ("0.1", "500", "2"), ("0.1", "1000", "2")]
    latencies = _rows(tmp_path / "a" / "latencies.csv")
    assert len(latencies) == sum(int(r["committed"]) for r in rows)
    # The experiments extra (installed by `make test`) adds the Parquet copy.
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "a" / "runs.parquet").to_pylist()[0]["trace_hash"] == \
        rows[0]["trace_hash"]


def test_a_grid_mixing_integers_and_fractions_is_one_float_column_in_parquet(tmp_path):
    import pyarrow.parquet as pq

    assert tables.write_parquet(tmp_path / "t.parquet", [{"loss": 0}, {"loss": 0.05}])
    assert pq.read_table(tmp_path / "t.parquet").to_pylist() == [{"loss": 0.0}, {"loss": 0.05}]


def test_the_measurements_do_not_change_the_run():
    params = {"clients": 2, "requests_per_client": 5, "crash_replica": 0, "crash_at_ms": 200}
    measured = ex.run_job((0, 0, params, 4))
    plain = ex.run_job((0, 0, params, 4), measured=False)
    assert measured["result"]["trace_hash"] == plain["result"]["trace_hash"]


def test_chained_observers_pass_every_call_on_unchanged():
    """Measurements and the served-work oracle stacked in front of an observer the run had
    (a scenario's, a test's): it is told exactly what it is told alone, and the run is the
    same."""
    from simulations.checkers import ServedWorkWatch, served_work_budget
    from simulations.engine import Observer, Simulation

    class Counting(Observer):
        def __init__(self):
            self.calls = {"delivering": 0, "ticking": 0, "readied": 0, "client_result": 0}

        def delivering(self, source, destination, message):
            self.calls["delivering"] += 1

        def ticking(self, replica_id, now_ms):
            self.calls["ticking"] += 1

        def readied(self, replica_id, ready):
            self.calls["readied"] += 1

        def client_result(self, client, result):
            self.calls["client_result"] += 1

    runs = []
    for chained in (False, True):
        sim = Simulation(seed=2, clients=2, requests_per_client=4)
        sim.observer = counting = Counting()
        if chained:
            measurements = ex.Measurements().install(sim)
            ServedWorkWatch(served_work_budget(sim.config)).install(sim)
        assert sim.run(until_ms=10_000)
        runs.append((counting.calls, sim.trace_hash()))
    assert runs[0] == runs[1] and all(runs[0][0].values())
    assert measurements.messages_sent > 0


def test_a_view_change_is_measured_from_the_first_view_change_to_the_new_view():
    """The primary crashes: one view change (V1-V3), lasting a few message delays, while
    clients wait at least a request timeout; without a fault, none."""
    crashed = ex.run_job((0, 0, {"clients": 2, "requests_per_client": 10, "crash_replica": 0,
                                 "crash_at_ms": 200, "request_timeout_ms": 600}, 1))["metrics"]
    assert crashed["view_changes"] == 1
    assert 0 < crashed["view_change_ms"] < 600 <= crashed["outage_ms"]
    calm = ex.run_job((0, 0, {"clients": 2, "requests_per_client": 10}, 1))["metrics"]
    assert calm["view_changes"] == 0 and calm["view_change_ms"] == 0
    assert calm["outage_ms"] < 600


def test_the_summary_gives_a_mean_and_a_95_percent_interval_per_point():
    mean, half = tables.mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / 3 ** 0.5)
    assert tables.mean_ci95([5.0]) == (5.0, 0.0)
    assert tables.mean_ci95([float("nan"), 4.0, 6.0])[0] == 5.0
    assert ex.percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert ex.percentile([4.0, 1.0, 3.0, 2.0], 99) == 4.0


FAILING = """
[experiment]
name = "failing"
seeds = "1"
[fixed]
clients = 2
requests_per_client = 5
crash_replica = 0
crash_at_ms = 100
[grid]
liveness_bound_ms = [30000, 200]
batch_delay_ms = [0, 5000]
"""


def test_failing_and_crashing_runs_are_recorded_with_their_replay_command(tmp_path, capsys):
    """A liveness violation (a bound shorter than a view change) and a run whose set-up
    raises (batch_delay_ms above request_timeout_ms: ConfigError) are rows like the others,
    with the command that replays them; exit 3 (a crash) wins over 1."""
    path = _write(tmp_path, FAILING)
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--workers", "1", "--out", str(out)]) == 3
    rows = {(r["liveness_bound_ms"], r["batch_delay_ms"]): r for r in _rows(out / "runs.csv")}
    assert rows[("30000", "0")]["status"] == "ok" and rows[("30000", "0")]["replay"] == ""
    violation = rows[("200", "0")]
    assert violation["status"] == "violation" and violation["checkers"] == "liveness"
    crashed = rows[("30000", "5000")]
    assert crashed["status"] == "crashed" and crashed["checkers"] == "crash"
    assert crashed["replay"] == (f"python -m simulations experiment {path} --replay "
                                 f"{crashed['point']}:1")
    err = capsys.readouterr().err
    assert crashed["replay"] in err and violation["replay"] in err
    assert main(["experiment", str(path), "--replay", f"{violation['point']}:1"]) == 1
    assert main(["experiment", str(path), "--replay", f"{crashed['point']}:1"]) == 3
    replayed = capsys.readouterr().out
    assert "batch_delay_ms = 5000 must be below" in replayed
    assert main(["experiment", str(path), "--replay", "9:1"]) == 2
    assert "no point 9" in capsys.readouterr().err
    assert main(["experiment", str(path), "--replay", f"{violation['point']}:7"]) == 1
    assert main(["experiment", str(path), "--replay", "nonsense"]) == 2


def test_an_interrupted_experiment_resumes_without_redoing_finished_runs(tmp_path, monkeypatch):
    path = _write(tmp_path)
    experiment = ex.load_experiment(path)
    whole = tmp_path / "whole"
    run_experiment(experiment, LocalExecutor(1), whole)
    # An interruption after three runs, the fourth line cut off mid-write.
    journal = (whole / "runs.jsonl").read_text().splitlines()
    part = tmp_path / "part"
    part.mkdir()
    (part / "runs.jsonl").write_text("\n".join(journal[:3]) + "\n" + journal[3][:40])
    ran: list[tuple] = []
    real = exec_module.run_job

    def counting(job, measured=True):
        ran.append((job[1], job[3]))
        return real(job, measured)

    monkeypatch.setattr(exec_module, "run_job", counting)
    rows, _, done_now = run_experiment(experiment, LocalExecutor(1), part)
    finished = {(json.loads(line)["point"], json.loads(line)["seed"]) for line in journal[:3]}
    assert done_now == 5 and len(ran) == 5 and not finished & set(ran)
    assert (part / "runs.csv").read_text() == (whole / "runs.csv").read_text()
    ran.clear()
    run_experiment(experiment, LocalExecutor(1), part)
    assert ran == []
    run_experiment(experiment, LocalExecutor(1), part, fresh=True)
    assert len(ran) == 8


def _dying_run_job(job, measured=True):
    """Kills its worker process at job 2, as a segfault would."""
    if job[0] == 2:
        os._exit(1)
    return ex.run_job(job, measured)


def test_a_run_that_kills_its_worker_process_is_a_crash_not_the_end(monkeypatch):
    jobs = ex.Experiment("t", "", [1, 2], {"clients": 2, "requests_per_client": 3},
                         {"loss": [0.0, 0.1]}, {}).jobs()
    monkeypatch.setattr(exec_module, "run_job", _dying_run_job)
    entries = sorted(LocalExecutor(2).run(jobs), key=lambda e: e["job"])
    assert [e["job"] for e in entries] == [0, 1, 2, 3]
    died = entries[2]["result"]["violations"]
    assert [v["checker"] for v in died] == ["crash"] and "worker process" in died[0]["message"]
    assert all(not e["result"]["violations"] for i, e in enumerate(entries) if i != 2)


def test_the_sweep_runs_on_the_same_executors_with_the_same_traces(tmp_path):
    """Issue 17, item 5: `sweep` is a grid of scenarios × seeds on the experiment executors;
    a pool of two gives the runs one process gives."""
    tables = []
    for jobs in ("1", "2"):
        out = tmp_path / f"sweep{jobs}.csv"
        assert main(["sweep", "--scenarios", "baseline,crash_primary", "--seeds", "1-2",
                     "--workers", jobs, "--csv", str(out)]) == 0
        tables.append([(r["scenario"], r["seed"], r["trace_hash"]) for r in _rows(out)])
    assert tables[0] == tables[1] and len(tables[0]) == 4


# ------------------------------------------------------------------ extras: plots and Ray


PLOTTED = SMALL + """
[[plot.figure]]
kind = "line"
name = "timeout"
x = "request_timeout_ms"
y = "outage_ms"
series = "loss"
[[plot.figure]]
kind = "latency_cdf"
name = "cdf"
by = "loss"
where = { request_timeout_ms = 500 }
"""


def test_plot_draws_the_figures_the_file_asks_for(tmp_path):
    out = tmp_path / "out"
    assert main(["experiment", str(_write(tmp_path, PLOTTED)), "--workers", "1", "--out",
                 str(out)]) == 0
    assert main(["plot", str(out), "--format", "both"]) == 0
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == ["cdf.png", "cdf.svg", "timeout.png", "timeout.svg"]
    assert (out / "figures" / "timeout.png").read_bytes().startswith(b"\x89PNG")


def test_confidence_bands_of_a_non_negative_metric_stop_at_zero():
    """Two seeds with one outlier give a 95% interval wider than the mean: the band of a line
    figure and the error bar of a relative one are drawn from 0, not below (a duration or a
    throughput cannot be negative), and still reach the interval's upper end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulations import experiment_plot as plot

    summary = [{"loss": 0.0, "request_timeout_ms": t, "view_change_ms_mean": 100.0,
                "view_change_ms_ci95": 900.0} for t in (250, 500)]
    fig = plot._line(plt, {"x": "request_timeout_ms", "y": "view_change_ms",
                           "series": "loss", "yscale": "symlog"}, summary)
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == 0.0 and band.max() == 1000.0
    assert fig.axes[0].get_yscale() == "symlog" and fig.axes[0].get_ylim()[0] == 0
    plt.close(fig)
    relative = [{"behaviour": "none", "throughput_per_s_mean": 50.0,
                 "throughput_per_s_ci95": 1.0, "failing": 0, "runs": 3},
                {"behaviour": "slow", "throughput_per_s_mean": 25.0,
                 "throughput_per_s_ci95": 40.0, "failing": 0, "runs": 3}]
    fig, _ = plot._relative(plt, {"by": "behaviour"}, relative)
    bar = next(c for c in fig.axes[0].containers if hasattr(c, "has_xerr")
                ).lines[2][0].get_segments()[0][:, 0]
    assert min(bar) == 0.0 and max(bar) == pytest.approx(0.5 + 0.8)
    plt.close(fig)
    with pytest.raises(ex.ExperimentError, match="yscale 'log' is not linear or symlog"):
        plot._line(plt, {"name": "v", "x": "request_timeout_ms", "y": "view_change_ms",
                         "yscale": "log"}, summary)


def test_the_relative_table_compares_each_behaviour_with_the_fault_free_run():
    summary = [
        {"behaviour": "none", "behaviour_replica": 0, "throughput_per_s_mean": 50.0,
         "throughput_per_s_ci95": 5.0, "failing": 0, "runs": 3},
        {"behaviour": "silent", "behaviour_replica": 0, "throughput_per_s_mean": 25.0,
         "throughput_per_s_ci95": 10.0, "failing": 1, "runs": 3},
    ]
    table = relative_table({"by": "behaviour", "series": "behaviour_replica"}, summary)
    assert table == [{"behaviour": "silent", "behaviour_replica": 0, "relative": 0.5,
                      "ci95": 0.2, "failing": 1, "runs": 3}]


def test_a_relative_figure_without_its_baseline_or_a_figure_of_unknown_kind_is_refused(
        tmp_path, capsys):
    summary = [{"behaviour": "silent", "throughput_per_s_mean": 1.0,
                "throughput_per_s_ci95": 0.0, "failing": 0, "runs": 1}]
    with pytest.raises(ex.ExperimentError, match="no grid point with behaviour = 'none'"):
        relative_table({"name": "r", "by": "behaviour"}, summary)
    zero = [{**summary[0], "behaviour": "none", "throughput_per_s_mean": 0.0}]
    with pytest.raises(ex.ExperimentError, match="the baseline's throughput_per_s is 0"):
        relative_table({"name": "r", "by": "behaviour"}, zero)
    out = tmp_path / "out"
    text = SMALL + '[[plot.figure]]\nkind = "pie"\nname = "p"\n'
    assert main(["experiment", str(_write(tmp_path, text)), "--workers", "1", "--out",
                 str(out), "--quick"]) == 0
    assert main(["plot", str(out)]) == 2
    assert "figure p: unknown kind 'pie'" in capsys.readouterr().err


def test_plot_of_a_directory_without_results_is_a_usage_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "experiment's output directory" in capsys.readouterr().err


def test_a_command_needing_a_missing_extra_names_it(tmp_path, monkeypatch, capsys):
    """Without ray or matplotlib installed, --ray and plot say what to install (exit 2)."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["experiment", str(_write(tmp_path)), "--ray", "auto"]) == 2
    assert "--ray needs ray" in capsys.readouterr().err
    assert main(["sweep", "--scenarios", "baseline", "--seeds", "1", "--ray", "auto",
                 "--csv", str(tmp_path / "s.csv")]) == 2
    assert "pip install 'pbft[experiments]'" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "plot needs matplotlib" in capsys.readouterr().err


def test_ray_gives_the_trace_hashes_of_a_local_run(tmp_path):
    """Issue 17, item 3: the same grid on a Ray instance started here (`ray.init()`, two CPUs,
    no dashboard) gives the same table as the local executor."""
    import ray
    experiment = ex.load_experiment(_write(tmp_path), quick=True, seeds="1-2")
    local = run_experiment(experiment, LocalExecutor(1), tmp_path / "local")[0]
    # Its workers import this checkout (not another the package may be installed from).
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        remote = run_experiment(experiment, exec_module.RayExecutor("auto"),
                                tmp_path / "ray")[0]
    finally:
        ray.shutdown()
    assert len(remote) == 4
    assert [r["trace_hash"] for r in remote] == [r["trace_hash"] for r in local]
    assert remote == local


# ------------------------------------------------------------------ the README and the benchmark


def _readme_experiment_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Experiments"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_experiment_commands_run_as_written(tmp_path, monkeypatch, capsys):
    """README, "Experiments": each command of its block (run in this process, as
    `python -m simulations` would), in a directory holding a copy of experiments/ (so that
    results/ and figures/ land there), exits 0 and writes what the README says."""
    import shutil

    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    monkeypatch.chdir(tmp_path)
    commands = _readme_experiment_commands()
    assert len(commands) == 7
    for command in commands:
        words = command.split()
        assert words[:3] == [".venv/bin/python", "-m", "simulations"], command
        assert main(words[3:]) == 0, f"{command}\n{capsys.readouterr()}"
    assert (tmp_path / "results" / "throughput" / "figures" / "throughput_vs_clients.png").exists()
    assert (tmp_path / "results" / "view_change" / "figures" /
            "outage_vs_request_timeout.svg").exists()
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {
        "byzantine_cost.png", "byzantine_cost.svg", "byzantine_cost.md"}
    assert len(_rows(tmp_path / "results" / "byzantine" / "runs.csv")) == 10


def test_the_executor_benchmark_prints_its_figures_and_the_same_traces(capsys, monkeypatch):
    """benchmarks/experiment_throughput.py (without Ray, whose run the Ray test covers): rates
    for 1 and 2 local workers in its last line, and every executor gave the same traces."""
    from benchmarks import experiment_throughput

    monkeypatch.setattr(experiment_throughput, "grid",
                        lambda seeds: experiment_throughput.Experiment(
                            "bench", "", [1, 2, 3, 4], {"clients": 2, "requests_per_client": 5},
                            {}, {}))
    summary = experiment_throughput.main(["--quick", "--no-ray"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == summary and last["runs"] == 4 and last["same_traces"] is True
    assert last["runs_per_s_local_1"] > 0 and last["runs_per_s_local_2"] > 0
    assert last["runs_per_s_ray"] is None


def test_an_interrupted_command_keeps_what_finished_and_the_same_command_resumes(
        tmp_path, monkeypatch, capsys):
    path, out = _write(tmp_path), tmp_path / "out"
    real, calls = exec_module.run_job, []

    def interrupted(job, measured=True):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(job, measured)

    monkeypatch.setattr(exec_module, "run_job", interrupted)
    assert main(["experiment", str(path), "--workers", "1", "--out", str(out)]) == 130
    assert "the same command resumes" in capsys.readouterr().err
    assert len((out / "runs.jsonl").read_text().splitlines()) == 3
    calls.clear()
    monkeypatch.setattr(exec_module, "run_job", lambda job, measured=True: (
        calls.append(job), real(job, measured))[1])
    assert main(["experiment", str(path), "--workers", "1", "--out", str(out)]) == 0
    assert len(calls) == 5 and len(_rows(out / "runs.csv")) == 8


def test_a_journal_of_other_code_is_refused_and_one_of_this_code_resumes(tmp_path, capsys):
    """Issue 17: resuming after a code change would mix old and new runs in one table; the
    journal records the code's fingerprint, a journal of other code is refused (exit 2, naming
    --fresh), --fresh starts over, and the same code resumes without running anything."""
    path, out = _write(tmp_path), tmp_path / "out"
    assert main(["experiment", str(path), "--workers", "1", "--out", str(out)]) == 0
    journal = out / "runs.jsonl"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 8 and {e["code"] for e in lines} == {tables.code_fingerprint()}
    capsys.readouterr()

    assert main(["experiment", str(path), "--workers", "1", "--out", str(out)]) == 0
    assert "(0 run now, 8 already done)" in capsys.readouterr().out

    lines[3]["code"] = "0123456789abcdef"
    journal.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert main(["experiment", str(path), "--workers", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other code (fingerprint 0123456789abcdef" in err and "--fresh" in err
    del lines[5]["code"]  # a journal written before fingerprints: unknown code
    lines[3]["code"] = tables.code_fingerprint()
    journal.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert main(["experiment", str(path), "--workers", "1", "--out", str(out)]) == 2
    assert "fingerprint none recorded" in capsys.readouterr().err

    assert main(["experiment", str(path), "--workers", "1", "--out", str(out), "--fresh"]) == 0
    assert "(8 run now, 0 already done)" in capsys.readouterr().out


def test_the_code_fingerprint_follows_the_source_files(tmp_path, monkeypatch):
    """The fingerprint is a hash of the source files (not git's commit): another file's
    contents give another fingerprint."""
    import pbft

    fake = tmp_path / "pbft"
    fake.mkdir()
    (fake / "__init__.py").write_text("x = 1\n")
    monkeypatch.setattr(pbft, "__file__", str(fake / "__init__.py"))
    tables.code_fingerprint.cache_clear()
    try:
        first = tables.code_fingerprint()
        tables.code_fingerprint.cache_clear()
        (fake / "__init__.py").write_text("x = 2\n")
        assert tables.code_fingerprint() != first
    finally:
        tables.code_fingerprint.cache_clear()


def test_the_fault_parameters_shape_the_run():
    """A partition of the primary and a crash with a restart are faults of the run (the
    isolated primary is replaced: a view change; the restarted replica is not faulty at the
    end); larger operations mean more bytes for the same messages."""
    base = {"clients": 2, "requests_per_client": 10}
    cut = ex.run_job((0, 0, {**base, "isolate_replica": 0, "isolate_from_ms": 100,
                             "isolate_for_ms": 2000}, 1))
    assert cut["metrics"]["view_changes"] >= 1 and not cut["result"]["violations"]
    restarted = ex.run_job((0, 0, {**base, "crash_replica": 2, "crash_at_ms": 100,
                                   "restart_after_ms": 500}, 1))
    assert restarted["result"]["faulty"] == [] and not restarted["result"]["violations"]
    down = ex.run_job((0, 0, {**base, "crash_replica": 2, "crash_at_ms": 100}, 1))
    assert down["result"]["faulty"] == [2]
    small = ex.run_job((0, 0, base, 1))["metrics"]
    large = ex.run_job((0, 0, {**base, "operation_bytes": 2000}, 1))["metrics"]
    assert large["bytes_sent"] > small["bytes_sent"] + 2000 * 20
