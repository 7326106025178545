"""The simulator itself: determinism (same seed, same trace hash; different seeds differ), the
transport's frame limit, slow message types and memory samples, every scenario of the catalogue
passing its CI seeds under every checker, and the command line."""

from __future__ import annotations

import gc
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from pbft.codec import batch_digest, encode
from pbft.core import sizes
from pbft.messages import Checkpoint, LoggedBatch, Prepare, PrePrepare, Request
from simulations.engine import Simulation
from simulations.network import Network, NetworkProfile
from simulations.scenarios import CATALOGUE, Scenario, run_scenario

from .processes import run_into_closed_pipe


@pytest.mark.parametrize("name", ["baseline", "swarm", "crash_all_restart",
                                  "batching_lossy_primary_cut"])
def test_same_seed_same_trace_different_seed_different_trace(name):
    """Same code and seed: the same trace, byte for byte (the hash proves it); another seed
    gives another trace."""
    entry = CATALOGUE[name]
    first, again, other = run_scenario(entry, 11), run_scenario(entry, 11), run_scenario(entry, 12)
    assert first.trace_hash == again.trace_hash
    assert (first.events, first.deliveries, first.committed) == (
        again.events, again.deliveries, again.committed)
    assert other.trace_hash != first.trace_hash


def test_a_batching_delay_fills_batches_and_saves_deliveries():
    """N2 with batch_delay_ms: under the same client load the primary sends fewer, fuller
    batches, so each request costs fewer message deliveries, and every request still executes
    exactly once (the catalogue scenarios `batching*` run every checker on it)."""
    runs = {}
    for name in ("baseline", "batching"):
        sim = CATALOGUE[name].build(1)
        result = run_scenario(CATALOGUE[name], 1, sim)
        assert result.violations == [] and result.liveness
        batches = sim.executed[1]
        runs[name] = (len(batches), sum(len(b.requests) for b in batches), sim.deliveries)
    (plain_batches, plain_requests, plain_deliveries) = runs["baseline"]
    (batched_batches, batched_requests, batched_deliveries) = runs["batching"]
    assert plain_requests == batched_requests
    assert batched_batches < 0.75 * plain_batches
    assert batched_deliveries < 0.8 * plain_deliveries


@pytest.fixture
def gc_thresholds():
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.parametrize(("before", "during"), [((700, 10, 10), (10_000, 10, 10)),
                                                ((50_000, 5, 5), (50_000, 5, 5)),
                                                ((0, 10, 10), (0, 10, 10))])
def test_a_run_relaxes_young_collections_and_restores_the_thresholds(gc_thresholds, before,
                                                                      during):
    """The collector's first threshold is raised for the run, never lowered, and a threshold
    of 0 (collection off) is left alone; afterwards the thresholds are as they were, also
    when the run raises."""
    gc.set_threshold(*before)
    seen = []
    sim = Simulation(seed=1, clients=1, requests_per_client=2)
    sim.at(5, lambda s: seen.append(gc.get_threshold()), fault=False)
    assert sim.run(until_ms=2_000)
    assert seen == [during]
    assert gc.get_threshold() == before

    def fail(_sim):
        raise RuntimeError("an action failed")

    failing = Simulation(seed=1, clients=1, requests_per_client=2)
    failing.at(5, fail, fault=False)
    with pytest.raises(RuntimeError, match="an action failed"):
        failing.run(until_ms=2_000)
    assert gc.get_threshold() == before


# ------------------------------------------------------------------ transport limits, slow
# message types, memory samples (the availability oracles of issue 11 rely on them)


def test_the_engine_drops_a_batch_larger_than_a_frame_and_counts_it():
    """A transport refuses a frame above `frame_bytes_max`: the engine drops a PRE-PREPARE or
    LOGGED-BATCH that does not fit (each copy counted in `oversized_dropped`) and delivers one
    that does."""
    sim = Simulation(seed=1, clients=0)
    operation = b"x" * sim.config.operation_bytes_max
    requests = tuple(Request(operation, t, b"c" * 32, False, b"") for t in range(1, 5))
    large = PrePrepare(0, 1, batch_digest(0, requests), 0, requests, 0, b"")
    small = PrePrepare(0, 2, batch_digest(0, requests[:2]), 0, requests[:2], 0, b"")
    frame = sim.config.frame_bytes_max
    assert sizes.message_bytes(large) > frame >= len(encode(small))
    # Above the frame by the size bound only: the encoding, which fits, decides.
    bounded = (frame - sizes.PRE_PREPARE_OVERHEAD_BYTES) // 4 - sizes.REQUEST_OVERHEAD_BYTES + 8
    close = tuple(Request(b"x" * bounded, t, b"c" * 32, False, b"") for t in range(1, 5))
    borderline = PrePrepare(0, 3, batch_digest(0, close), 0, close, 0, b"")
    assert sizes.message_bytes(borderline) > frame >= len(encode(borderline))
    received: list = []
    sim.replicas[1].receive = received.append  # what arrives, unprocessed
    sim.send(0, (1, 2, 3), large)
    sim.send(0, (1,), small)
    sim.send(0, (1,), LoggedBatch(large, ()))
    sim.send(0, (1,), borderline)
    sim.network.isolate(3, [0])  # the faulty-network path of `send` measures too
    sim.send(0, (1, 2), large)
    sim.run(until_ms=100)
    assert sim.oversized_dropped == 3 + 1 + 2
    assert sorted(received, key=lambda m: m.sequence) == [small, borderline]


def test_the_engine_drops_an_oversized_frame_in_wire_mode_too():
    """In wire mode every message is encoded: one whose frame exceeds `frame_bytes_max` is
    dropped and counted before it reaches the network."""
    sim = Simulation(seed=1, clients=0, wire=True)
    operation = b"x" * sim.config.operation_bytes_max
    requests = tuple(Request(operation, t, b"c" * 32, False, b"") for t in range(1, 5))
    large = PrePrepare(0, 1, batch_digest(0, requests), 0, requests, 0, b"\x00" * 64)
    sim.send(0, (1, 2), large)
    assert sim.oversized_dropped == 2


def test_network_slows_one_message_type_to_chosen_destinations_only():
    """`Network.slow_down`: CHECKPOINTs to replicas 1 and 2 arrive 150-300 ms later than their
    latency; to replica 3, or any other message type, as usual; `heal` lifts the rule."""
    network = Network(random.Random(1), NetworkProfile(1, 5))
    assert network.plain_latency_us() is not None
    network.slow_down(Checkpoint, 150, 300, destinations=[1, 2])
    assert network.plain_latency_us() is None
    checkpoint = Checkpoint(8, b"\x00" * 32, 0, b"")
    prepare = Prepare(0, 1, b"\x00" * 32, 0, b"")
    for _ in range(50):
        for destination in (1, 2):
            (at_us,) = network.arrivals_us(0, destination, 0, checkpoint)
            assert 151_000 <= at_us <= 305_000
        (at_us,) = network.arrivals_us(0, 3, 0, checkpoint)
        assert at_us <= 5_000
        (at_us,) = network.arrivals_us(0, 1, 0, prepare)
        assert at_us <= 5_000
    network.heal()
    assert network.plain_latency_us() is not None
    with pytest.raises(ValueError):
        network.slow_down(Checkpoint, 300, 150)


def test_memory_is_sampled_only_when_asked_and_keeps_each_replicas_peak():
    """`sample_memory_every_ms`: `Replica.bytes_held()` of every replica every that many virtual
    ms, keeping each one's largest; a simulation that does not ask never walks its replicas."""
    quiet = Simulation(seed=1, clients=2, requests_per_client=5)
    assert quiet.run(until_ms=5_000) and quiet.peak_bytes_held == {}
    sim = Simulation(seed=1, clients=2, requests_per_client=5, sample_memory_every_ms=20)
    held: dict[int, list[int]] = {r: [] for r in range(4)}
    for r, replica in enumerate(sim.replicas):
        bytes_held = replica.bytes_held

        def recording(r=r, bytes_held=bytes_held):
            held[r].append(bytes_held())
            return held[r][-1]

        replica.bytes_held = recording
    assert sim.run(until_ms=5_000)
    for r in range(4):
        assert len(held[r]) >= sim.now_us // 20_000 - 1
        assert sim.peak_bytes_held[r] == max(held[r]) > 0
    with pytest.raises(ValueError):
        sim.sample_memory(0)


def test_the_engine_notes_the_view_changes_correct_replicas_ask_for():
    """V1: after the primary crashes, the correct replicas' VIEW-CHANGEs for view 1 are noted
    (checkers.needless_view_changes judges them)."""
    sim = Simulation(seed=1)
    sim.at(300, lambda s: s.crash(0))
    assert sim.run()
    assert {view for _, view in sim.view_changes_sent} == {1}
    assert {replica for replica, _ in sim.view_changes_sent} == {1, 2, 3}


def ci_runs(catalogue: dict[str, Scenario]) -> list:
    """(scenario, seed) for every seed of every scenario that takes part in CI."""
    return [pytest.param(name, seed, id=f"{name}-{seed}")
            for name, entry in catalogue.items() if entry.ci for seed in entry.seeds]


CI_RUNS = ci_runs(CATALOGUE)


@pytest.mark.parametrize(("name", "seed"), CI_RUNS)
def test_catalogue_scenario_is_safe_and_live(name, seed):
    """Every scenario in the catalogue that takes part in CI (`Scenario.ci`), with its seeds:
    no checker or availability oracle reports a violation, and every correct client's requests
    complete (liveness, at most f faulty)."""
    result = run_scenario(CATALOGUE[name], seed)
    assert result.violations == [], [v.as_dict() for v in result.violations]
    assert result.liveness
    assert result.committed > 0


def test_the_ci_sweep_leaves_out_the_scenarios_marked_so():
    """`Scenario.ci` False (a scenario exposing a known bug): registered, not in the sweep."""
    build = CATALOGUE["baseline"].build
    catalogue = {"in": Scenario("in", "", build, seeds=(1, 2)),
                 "out": Scenario("out", "", build, ci=False)}
    assert [tuple(param.values) for param in ci_runs(catalogue)] == [("in", 1), ("in", 2)]


#: The checkout under test: its `simulations` must be the one the command line imports (not an
#: installed copy of another checkout), whatever the working directory.
ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, cwd):
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "simulations", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": path})


def test_cli_list_run_and_sweep(tmp_path):
    """`list` prints one scenario a line (name, space, description); `run --json` prints the
    documented keys; `sweep --json` prints one object per run then a summary; all exit 0."""
    listed = _cli("list", cwd=tmp_path)
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == list(CATALOGUE)
    run = _cli("run", "baseline", "--seed", "3", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    for key in ("scenario", "seed", "replicas", "faulty", "committed", "violations", "liveness",
                "virtual_s", "wall_s", "events", "trace_hash"):
        assert key in document
    sweep = _cli("sweep", "--scenarios", "baseline,crash_primary", "--seeds", "1-3", "--workers",
                 "1", "--json", "--csv", str(tmp_path / "runs.csv"), cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    rows = [json.loads(line) for line in sweep.stdout.strip().splitlines()]
    assert len(rows) == 7 and rows[-1]["summary"] and rows[-1]["failing"] == 0
    assert (tmp_path / "runs.csv").read_text().count("\n") == 7


_TINY_EXPERIMENT = """
[experiment]
name = "tiny"
seeds = "1"
[fixed]
clients = 1
requests_per_client = 2
"""


@pytest.mark.parametrize("command", [
    ["list"], ["transcript"], ["run", "baseline", "--seed", "1", "--json"],
    ["sweep", "--scenarios", "baseline", "--seeds", "1", "--workers", "1", "--json"],
    ["replay", "replay.json"], ["experiment", "tiny.toml", "--workers", "1", "--out", "out"],
])
def test_cli_output_into_a_closed_pipe_prints_no_traceback(tmp_path, command):
    """Issue 16, item 4 (`--json | head`): every subcommand whose reader has gone stops quietly
    with 141 (as a process killed by SIGPIPE; not 1, which would claim violations)."""
    (tmp_path / "replay.json").write_text(json.dumps({"scenario": "baseline", "seed": 1}))
    (tmp_path / "tiny.toml").write_text(_TINY_EXPERIMENT)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    code, stderr = run_into_closed_pipe([sys.executable, "-m", "simulations", *command],
                                        timeout_s=120, cwd=tmp_path,
                                        env={**os.environ, "PYTHONPATH": path})  # fmt: skip
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert code == 141, stderr


def test_demo_into_a_closed_pipe_prints_no_traceback(tmp_path):
    """Issue 17 (`python -m simulations.demo | head -1`): the demo stops as the simulator's
    command does when its reader has gone, 141 and no traceback."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    code, stderr = run_into_closed_pipe([sys.executable, "-m", "simulations.demo"],
                                        timeout_s=120, cwd=tmp_path,
                                        env={**os.environ, "PYTHONPATH": path})  # fmt: skip
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert code == 141, stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_tables_are_plain_into_a_pipe_and_rich_on_a_terminal(monkeypatch, capsys):
    """Issue 16, item 5: the simulator's tables (`simulations.tables`) are columns aligned
    with two spaces into a pipe (no box drawing, names left, numbers right), a rich table on a
    terminal (a rule under the header; a "[...]" in a cell is text, not markup), and a row of
    the wrong width is refused."""
    from simulations.tables import Column, show

    columns = [Column("name"), Column("runs", right=True)]
    rows = [("baseline", 2), ("a[bold]b[/bold]", 120)]
    show(columns, rows)
    assert capsys.readouterr().out.splitlines() == [
        "name             runs", "baseline            2", "a[bold]b[/bold]   120"]
    show(columns, rows, header=False)
    assert capsys.readouterr().out.splitlines()[0] == "baseline           2"
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    show(columns, rows)
    drawn = terminal.getvalue()
    assert "─" in drawn and "a[bold]b[/bold]" in drawn and "name" in drawn
    with pytest.raises(ValueError, match="a row of 1 cells for 2 columns"):
        show(columns, [("baseline",)])


def test_cli_sweep_table_and_list_into_a_pipe(tmp_path):
    """`sweep` without --json prints its per-scenario table aligned for a pipe, then one line
    summing up; `list` one scenario a line, its name first, its description aligned."""
    sweep = _cli("sweep", "--scenarios", "baseline,crash_primary", "--seeds", "1",
                 "--workers", "1", "--csv", str(tmp_path / "runs.csv"), cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    header, *table, last = sweep.stdout.splitlines()
    assert header.split() == ["scenario", "runs", "violations", "live", "committed", "virtual",
                              "s", "wall", "s"]
    assert [row.split()[:3] for row in table] == [["baseline", "1", "0"],
                                                  ["crash_primary", "1", "0"]]
    assert len({len(row) for row in [header, *table]}) == 1 and "─" not in sweep.stdout
    assert last.startswith("2 runs, 0 with violations")
    listed = _cli("list", cwd=tmp_path).stdout.splitlines()
    starts = {line.index(entry.description) for line, entry in zip(listed, CATALOGUE.values())}
    assert len(starts) == 1 and "─" not in "".join(listed)


def test_cli_mutants_with_bad_seeds_is_a_usage_error(tmp_path):
    result = _cli("mutants", "--seeds", "x", cwd=tmp_path)
    assert result.returncode == 2 and "bad seeds 'x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_refuses_an_unknown_scenario(tmp_path):
    result = _cli("run", "no_such_scenario", "--seed", "1", cwd=tmp_path)
    assert result.returncode == 2 and "unknown scenario" in result.stderr
