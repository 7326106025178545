"""The simulator itself: determinism (same seed, same trace hash; different seeds differ), every
scenario of the catalogue passing its CI seeds under every checker, and the command line."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from simulations.engine import Simulation
from simulations.scenarios import CATALOGUE, run_scenario


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


CI_RUNS = [(name, seed) for name, entry in CATALOGUE.items() for seed in entry.seeds]


@pytest.mark.parametrize(("name", "seed"), CI_RUNS, ids=[f"{n}-{s}" for n, s in CI_RUNS])
def test_catalogue_scenario_is_safe_and_live(name, seed):
    """Every scenario in the catalogue, with its seeds: no checker reports a violation, and
    every correct client's requests complete (liveness, at most f faulty)."""
    result = run_scenario(CATALOGUE[name], seed)
    assert result.violations == [], [v.as_dict() for v in result.violations]
    assert result.liveness
    assert result.committed > 0


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "simulations", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


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
    sweep = _cli("sweep", "--scenarios", "baseline,crash_primary", "--seeds", "1-3", "--jobs",
                 "1", "--json", "--csv", str(tmp_path / "runs.csv"), cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    rows = [json.loads(line) for line in sweep.stdout.strip().splitlines()]
    assert len(rows) == 7 and rows[-1]["summary"] and rows[-1]["failing"] == 0
    assert (tmp_path / "runs.csv").read_text().count("\n") == 7


def test_cli_refuses_an_unknown_scenario(tmp_path):
    result = _cli("run", "no_such_scenario", "--seed", "1", cwd=tmp_path)
    assert result.returncode == 2 and "unknown scenario" in result.stderr
