"""The mutation self-test (issue 14, item 4): known PBFT bugs, each an exact source patch of a
copy of the core (`simulations.mutants`), must be found by the simulator's scenarios and
checkers. Each mutant cites the rule it breaks (N3, N4, N5, N7, N8, N10, V1, V3, C2, S1, S1')."""

from __future__ import annotations

import json

import pytest

import pbft.core.replica as real_replica
import pbft.core.view_change as real_view_change
from pbft.core import ClientSession, Replica
from simulations import mutants
from simulations.__main__ import main
from simulations.results import RunResult, Violation

#: The mutants issue 14 lists by name (item 4), under the names given here.
REQUIRED = {
    "duplicate_votes", "mismatched_digest_votes", "primary_prepare_counted", "commit_on_2f",
    "view_change_without_certificates", "older_view_votes", "commit_signature_unverified",
    "logged_batch_commit_signatures_unverified", "new_view_2f", "new_view_tail_dropped",
    "certificate_other_digest", "checkpoint_proof_2f", "watermark_off_by_one", "reply_on_f",
    "timestamp_check_inverted", "state_transfer_digest_unchecked",
}


def test_the_catalogue_holds_every_mutant_the_issue_lists_and_each_builds():
    """Every listed mutant exists, every patch applies to today's core exactly once, and the
    built class is a Replica (or a ClientSession) whose code differs from the real one."""
    assert REQUIRED <= set(mutants.MUTANTS_BY_NAME)
    for mutant in mutants.MUTANTS:
        cls = mutants.build(mutant)
        base = Replica if mutant.side == "replica" else ClientSession
        assert issubclass(cls, base) and cls is not base
        assert cls.__mro__[1].__module__.startswith("pbft.core._mutant_")
        assert all(place in mutants.MUTANT_SCENARIOS or place in mutants.CATALOGUE
                   for place in mutant.focus)


def test_a_patch_that_no_longer_applies_fails_loudly():
    """A mutant whose text is not in the core (or is there twice) is an error, never a mutant
    that silently equals the correct core."""
    missing = mutants.Patch("replica", "this text is not in the core", "")
    with pytest.raises(mutants.MutantDoesNotApply, match="occurs 0 times"):
        mutants.patched_source("replica", [missing])
    twice = mutants.Patch("replica", "self.dropped[", "")
    with pytest.raises(mutants.MutantDoesNotApply, match="not once"):
        mutants.patched_source("replica", [twice])


def test_building_mutants_leaves_the_real_core_alone():
    """Mutants run beside the correct core in one process: the real modules keep their own
    functions (V3's NEW-VIEW check here, which two mutants patch)."""
    new_view_reason = real_view_change.new_view_reason
    for name in ("new_view_2f", "new_view_tail_dropped", "checkpoint_proof_2f"):
        mutants.build(mutants.MUTANTS_BY_NAME[name])
    assert real_view_change.new_view_reason is new_view_reason
    assert real_replica.new_view_reason is new_view_reason
    mutant_module = mutants.build(mutants.MUTANTS_BY_NAME["new_view_2f"]).__mro__[1]
    patched = vars(__import__(mutant_module.__module__, fromlist=["x"]))["new_view_reason"]
    assert patched is not new_view_reason


@pytest.mark.parametrize("name", mutants.FAST)
def test_the_fast_subset_is_killed_and_the_correct_core_passes_the_same_run(name):
    """N5 (commit on 2f), N8 (timestamp check inverted), N7 (reply on f), S1/N5 (COMMITs in
    a served batch not verified), N10 (older views' votes counted), V3 (NEW-VIEW with 2f
    VIEW-CHANGEs), V1 (certificate with PREPAREs of another digest), N3 (watermark off by
    one): each killed on its focused scenarios within 8 seeds; the correct core passes the
    killing run."""
    outcome = mutants.hunt(mutants.MUTANTS_BY_NAME[name], mutants.MUTANTS_BY_NAME[name].focus,
                           range(1, 9))
    assert outcome.killed, outcome
    control = mutants.run_one(None, outcome.place, outcome.seed)
    assert control.violations == [], [v.as_dict() for v in control.violations]
    killing = mutants.run_one(mutants.MUTANTS_BY_NAME[name], outcome.place, outcome.seed)
    assert outcome.checker in {v.checker for v in killing.violations}


def test_a_violation_the_correct_core_also_has_is_not_a_kill(monkeypatch):
    """A run that fails with the correct core too (a scenario that is itself failing) says
    nothing about the mutant: it is noted as noisy, and the hunt goes on."""
    def fake_run(mutant, place, seed):
        violations = [Violation("liveness", "stuck")]
        if mutant is not None and seed == 2:
            violations.append(Violation("agreement", "differs", 3, (1, 2)))
        return RunResult(place, seed, 4, [], 0, violations, False, 0.0, 0.0, 0, 0, "")

    monkeypatch.setattr(mutants, "run_one", fake_run)
    outcome = mutants.hunt(mutants.MUTANTS_BY_NAME["commit_on_2f"], ["baseline"], [1, 2])
    assert outcome.killed and (outcome.seed, outcome.checker) == (2, "agreement")
    assert outcome.noisy == [("baseline", 1, ["liveness"])] and outcome.runs == 2


def test_the_command_prints_a_table_and_a_json_last_line(capsys):
    """`python -m simulations mutants`: one table row per mutant, then one JSON object with
    mutants, killed and kill_ratio; exit 0 when all are killed, 2 for an unknown mutant."""
    code = main(["mutants", "--only", "timestamp_check_inverted", "--seeds", "1", "--workers", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert lines[1].split()[:3] == ["timestamp_check_inverted", "yes", "baseline"]
    last = json.loads(lines[-1])
    assert (last["mutants"], last["killed"], last["kill_ratio"]) == (1, 1, 1.0)
    assert main(["mutants", "--only", "no_such_mutant"]) == 2


def test_the_command_refuses_fewer_than_one_worker(capsys):
    """`mutants --workers 0` is a usage error (exit 2) naming the option, as for `sweep` and
    `experiment`, which share the option's name."""
    assert main(["mutants", "--only", "timestamp_check_inverted", "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    assert main(["sweep", "--scenarios", "baseline", "--seeds", "1", "--workers", "0"]) == 2
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err


#: Mutants the full run may leave alive: none (issue 14, item 4: every mutant killed). The
#: slow run fails if one survives.
SURVIVORS_TODAY: set[str] = set()


@pytest.mark.slow
def test_full_mutation_run_kills_every_mutant():
    """The full run: every mutant, its focus then the whole catalogue, seeds 1-8 (some
    focused kills need seed 8)."""
    outcomes = mutants.run_all([m.name for m in mutants.MUTANTS], range(1, 9), full=True, jobs=2)
    survivors = {row["mutant"] for row in outcomes if not row["killed"]}
    assert survivors == SURVIVORS_TODAY
