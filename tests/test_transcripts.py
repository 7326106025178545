"""Readable transcripts (issue 14, item 6): each key run, rendered again, must equal its file in
tests/transcripts/, and the runs must show what their headers say. A mismatch prints a unified
diff; `UPDATE_TRANSCRIPTS=1 pytest tests/test_transcripts.py` (or `python -m simulations
transcript all --write`) rewrites the files, to be read and committed with the change."""

from __future__ import annotations

import difflib
import os

import pytest

from simulations import transcript
from simulations.__main__ import main
from simulations.engine import Simulation
from simulations.transcript import SCENARIOS, TRANSCRIPT_DIR, Transcript, path_of, render


def _diff(expected: str, actual: str, name: str) -> str:
    return "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), actual.splitlines(keepends=True),
        fromfile=f"tests/transcripts/{name}.txt (checked in)",
        tofile=f"{name} (this checkout)",
    ))


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return {name: render(name) for name in SCENARIOS}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_transcript_matches_its_file(name: str, rendered: dict[str, str]) -> None:
    """The run's transcript is the checked-in one: a change in behaviour shows as this diff."""
    path = path_of(name)
    if os.environ.get("UPDATE_TRANSCRIPTS"):
        path.write_text(rendered[name], encoding="utf-8")
    assert path.exists(), f"no {path}: run UPDATE_TRANSCRIPTS=1 pytest {__file__}"
    expected = path.read_text(encoding="utf-8")
    if rendered[name] != expected:
        pytest.fail(f"transcript {name} changed (rewrite it with UPDATE_TRANSCRIPTS=1 if the "
                    f"change is meant):\n{_diff(expected, rendered[name], name)}", pytrace=False)


def test_every_transcript_file_has_a_scenario() -> None:
    """A file whose scenario was removed or renamed would never be compared again."""
    assert sorted(p.stem for p in TRANSCRIPT_DIR.glob("*.txt")) == sorted(SCENARIOS)


def test_the_diff_names_the_lines_that_changed() -> None:
    diff = _diff("a\nPREPARE v0 n1\nc\n", "a\nPREPARE v1 n1\nc\n", "x")
    assert "-PREPARE v0 n1\n" in diff and "+PREPARE v1 n1\n" in diff
    assert diff.startswith("--- tests/transcripts/x.txt (checked in)")


def test_same_seed_same_text(rendered: dict[str, str]) -> None:
    """Determinism: rendering again in the same process gives the same text."""
    assert render("view_change") == rendered["view_change"]


def test_watching_does_not_change_the_run() -> None:
    """The observer draws nothing and changes nothing: the same trace hash with and without."""
    entry = SCENARIOS["byzantine_primary"]
    plain = entry.build(entry.seed)
    plain.run(until_ms=entry.until_ms)
    watched = entry.build(entry.seed)
    Transcript(watched)
    watched.run(until_ms=entry.until_ms)
    assert watched.trace_hash() == plain.trace_hash()
    assert watched.events == plain.events


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_run_is_safe_and_live(name: str, rendered: dict[str, str]) -> None:
    """Each transcript shows a correct run: every request completed, no checker objected."""
    last = rendered[name].splitlines()[-1]
    assert last.endswith("checkers: no violation"), last
    done, of = last.split(": ")[1].split(" requests")[0].split(" of ")
    assert done == of


def test_normal_case_shows_the_three_phases(rendered: dict[str, str]) -> None:
    """N2-N7: PRE-PREPARE to the 3 backups, PREPAREs among all, COMMITs, executions, REPLYs."""
    lines = rendered["normal_case"].splitlines()
    kinds = [line.split()[4] for line in lines if " → " in line]
    for kind, count in (("REQUEST", 8), ("PRE-PREPARE", 6), ("PREPARE", 18), ("COMMIT", 24),
                        ("REPLY", 8)):
        assert kinds.count(kind) == count, (kind, kinds.count(kind))
    assert sum("* executes n1 (v0" in line for line in lines) == 4
    assert "-- n1 committed in view 0: r0 is the first to execute it" in lines
    assert sum("* accepts" in line for line in lines) == 2
    assert not any("✗" in line for line in lines if " → " in line)  # nothing refused


def test_view_change_shows_timers_view_changes_and_the_new_primary(
        rendered: dict[str, str]) -> None:
    """V1-V3: the request timers fire, VIEW-CHANGEs carry the prepared n1, r1 installs view 1
    and the retried request commits there; deliveries to the crashed r0 are marked."""
    text = rendered["view_change"]
    assert "-- 5.500 ms: r0, the primary, crashes" in text
    assert "* timers due: request" in text
    assert "-- view change: r1 is the first to ask for view 1 (whose primary is r1)" in text
    assert "-- view 1 installed: r1 is the primary" in text
    assert "VIEW-CHANGE v1 stable=n0 P=[n1 d=" in text
    assert "NEW-VIEW v1 V=[r1,r2,r3] O=[n1 d=" in text
    assert "✗ down" in text and "(again)" in text
    assert "* executes n2 (v1" in text


def test_state_transfer_shows_the_fetch(rendered: dict[str, str]) -> None:
    """S1: r3 learns of the stable checkpoint n2, fetches its state in chunks and executes n3."""
    text = rendered["state_transfer"]
    assert "* learns that n2 is stable, beyond its last executed n0" in text
    assert "-- checkpoint n2 stable: " in text
    assert "-- state transfer: r3 fetches the state at its new stable checkpoint n2" in text
    assert "FETCH-STATE n2 chunk 2" in text
    assert "* state transfer done: n2, " in text and " in 3 chunks" in text
    assert "CHECKPOINT n2 d=" in text and "(signed as r1)" in text
    assert "r3      * executes n3" in text


def test_byzantine_primary_shows_the_refused_equivocation(rendered: dict[str, str]) -> None:
    """N3, N10: the backups refuse the primary's second version and votes for the other
    digest; the view change carries the prepared batch into view 1."""
    text = rendered["byzantine_primary"]
    assert "r0 Byzantine (EquivocatingPrimary)" in text.splitlines()[1]
    pre_prepares = {line.split("d=")[1].split()[0] for line in text.splitlines()
                    if "r0 → " in line and "PRE-PREPARE v0 n1" in line}
    assert len(pre_prepares) == 2  # two digests for one (view, sequence)
    assert "✗ conflicting_pre_prepare" in text and "✗ mismatched_vote" in text
    assert "-- view 1 installed: r1 is the primary" in text
    assert "no new request (N8: already executed)" in text
    assert "-- n1 committed in view 1: " in text and "committed in view 0" not in text


def test_command_prints_and_writes(tmp_path, monkeypatch, capsys,
                                   rendered: dict[str, str]) -> None:
    assert main(["transcript"]) == 0
    assert capsys.readouterr().out.split()[0] == "normal_case"
    assert main(["transcript", "normal_case"]) == 0
    assert capsys.readouterr().out == rendered["normal_case"]
    monkeypatch.setattr(transcript, "TRANSCRIPT_DIR", tmp_path)
    assert main(["transcript", "normal_case", "--write"]) == 0
    assert (tmp_path / "normal_case.txt").read_text(encoding="utf-8") == rendered["normal_case"]
    assert main(["transcript", "no_such_run"]) == 2
    assert "unknown transcript 'no_such_run'" in capsys.readouterr().err


def test_an_unobserved_simulation_has_no_observer() -> None:
    assert Simulation(seed=1, clients=0).observer is None
