"""The hypothesis-driven search (simulations.search): it finds a failing fault schedule for each
deliberately broken replica within a bounded budget, shrinks it to a few faults that are all
needed, and the replay file reruns it to the same trace hash and the same violations; for the
correct replica it finds no safety violation. Schedule bounds are checked by hypothesis too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbft.core import Replica
from simulations.broken import BROKEN
from simulations.search import (
    ADVERSARIES,
    FAULT_WINDOW_MS,
    build_simulation,
    fault_schedules,
    normalise,
    replay_schedule,
    run_schedule,
    save_replay,
    search,
)

SAFETY = ("agreement", "single_vote", "validity", "exactly_once", "linearizability", "invariant")

#: Each broken replica, the checker that must catch it and the Byzantine behaviour it needs
#: (quorum bugs need one liar to become unsafe: see simulations.broken).
TARGETS = {
    "reexecute": ("exactly_once", ()),
    "double_vote": ("agreement", ("colluding_backup",)),
    # The evidence checkers see a commit on 2f COMMITs at once, with no fault in the schedule
    # (the search for an agreement violation by a colluding backup took minutes).
    "commit_on_2f": ("execution_evidence", ()),
    # Accepting a conflicting PRE-PREPARE shows first as a second PREPARE for the same (view,
    # sequence): single_vote judges that step, where agreement needs a whole unlucky schedule.
    "no_conflict_check": ("single_vote", ("equivocating_primary",)),
    "amnesiac": ("single_vote", ("equivocating_primary",)),
    "forgetful_new_primary": ("single_vote", ()),
}
EXAMPLES = 300
#: The amnesiac replica needs a crash in the one write whose votes already left, then a restart
#: in the same view: rare in the drawn schedules (about 1,000 runs with one seed in four when
#: this was written, ~20 s each try): opt-in (--run-slow); CI replays what it found (AMNESIAC).
EXAMPLES_FOR = {"amnesiac": 2_000}
SLOW_TARGETS = {"amnesiac"}
SEARCH_SEEDS = (0, 1, 2, 3)


@pytest.mark.parametrize("broken", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_TARGETS else name
    for name in sorted(TARGETS)
])
def test_search_finds_shrinks_and_replays_a_broken_replica(broken, tmp_path):
    """For a broken replica (N8, N10, N5, N3, N10 across a crash), the derandomized search finds a schedule that the
    right checker rejects; hypothesis shrinks it to a few faults (1 to 3 when this was written),
    none of which can be left out; the saved replay file reruns it to the same trace hash and
    violations."""
    checker, adversaries = TARGETS[broken]
    examples = EXAMPLES_FOR.get(broken, EXAMPLES)
    # Which schedules hypothesis draws for a given seed varies with the state of the process
    # (what it imported before: the same code drew other examples under `pytest tests/` than in
    # this file alone), so a few seeds are tried rather than one pinned.
    for seed in SEARCH_SEEDS:
        found = search(broken, examples, seed, checkers=(checker,), adversaries=adversaries)
        if found is not None:
            break
    assert found is not None, f"nothing found for {broken} in {examples} examples × {SEARCH_SEEDS}"
    assert checker in {v.checker for v in found.result.violations}
    assert found.faults <= 3, found.schedule
    assert found.schedule == normalise(found.schedule)
    for i in range(found.faults):
        smaller = found.schedule[:i] + found.schedule[i + 1:]
        result = run_schedule(found.seed, smaller, BROKEN[broken])
        assert checker not in {v.checker for v in result.violations}, f"fault {i} is not needed"

    path = save_replay(found, tmp_path)
    document = json.loads(path.read_text())
    assert document["scenario"] == "search" and document["broken"] == broken
    assert document["seed"] == found.seed and document["schedule"] == found.schedule
    replayed = replay_schedule(document)
    assert replayed.trace_hash == found.result.trace_hash == document["trace_hash"]
    assert [v.as_dict() for v in replayed.violations] == document["violations"]


def test_search_finds_no_safety_violation_with_the_correct_replica():
    """The same search, with every adversary and fault kind, against the correct `Replica`:
    agreement, validity, exactly-once and linearizability hold on every schedule tried."""
    assert search(Replica, 150, checkers=SAFETY) is None


#: Found by `search(Replica, checkers=("liveness",))`: the primary crashes at 388 ms while 19% of
#: messages are lost until the network heals at 8 s. Lost VIEW-CHANGEs are never sent again, so
#: replica 1 times out into views the others never reach (V4 starts the timer when a replica
#: *sends* its VIEW-CHANGE, not when 2f + 1 are in): views 13 vs 11 after 2000 s, no progress.
LIVELOCK = [
    {"fault": "network", "latency_ms_min": 1, "latency_ms_max": 1, "loss_percent": 19,
     "duplication_percent": 0},
    {"at_ms": 388, "fault": "crash", "replica": 0, "torn": False},
]


#: Found by the search after the first fix (retransmission alone): backup 3 crashes and the
#: primary is isolated from the start.
LIVELOCK_ISOLATED_PRIMARY = [
    {"at_ms": 0, "fault": "crash", "replica": 3, "torn": False},
    {"at_ms": 0, "fault": "partition", "from": [0], "to": [1, 2, 3], "one_way": False},
]


#: Found by the search with the view-change fixes in but before the V5 late-joiner fix: the
#: primary is cut off until the heal at 8 s, the next primary crashes at 2.5 s; after healing,
#: replica 0 stayed in view 0 while 2 and 3 waited in view 2 for a third VIEW-CHANGE.
LIVELOCK_LATE_JOINER = [
    {"fault": "network", "latency_ms_min": 1, "latency_ms_max": 1, "loss_percent": 4,
     "duplication_percent": 0},
    {"at_ms": 0, "fault": "partition", "from": [0], "to": [1, 2, 3], "one_way": False},
    {"at_ms": 2542, "fault": "crash", "replica": 1, "torn": False},
]


@pytest.mark.parametrize(("seed", "schedule"),
                         [(432, LIVELOCK), (0, LIVELOCK_ISOLATED_PRIMARY),
                          (1, LIVELOCK_LATE_JOINER)],
                         ids=["lossy-crashed-primary", "isolated-primary-crashed-backup",
                              "late-joiner"])
def test_pinned_liveness_failures_found_by_the_search_stay_fixed(seed, schedule):
    """Liveness, V4 (fixed bug, pinned): VIEW-CHANGEs are sent again until the view change
    ends, and the view-change timer starts only once 2f + 1 ask for the view, so lost messages
    no longer leave replicas stranded in different views."""
    result = run_schedule(seed, schedule, Replica)
    assert result.liveness, [v.as_dict() for v in result.violations]
    assert result.violations == []


def test_the_same_schedule_and_seed_give_the_same_trace():
    schedule = [{"at_ms": 300, "fault": "crash", "replica": 2, "torn": True},
                {"at_ms": 900, "fault": "restart", "replica": 2, "wipe": True},
                {"at_ms": 100, "fault": "partition", "from": [0], "to": [1, 3], "one_way": True}]
    first, again = run_schedule(7, schedule), run_schedule(7, schedule)
    assert first.trace_hash == again.trace_hash and first.events == again.events
    assert run_schedule(8, schedule).trace_hash != first.trace_hash


# ------------------------------------------------------------------ the bounds of a schedule


def _faulty_over_time(schedule: list[dict]) -> list[int]:
    byzantine = {e["replica"] for e in schedule if e["fault"] == "byzantine"}
    down: set[int] = set()
    counts = [len(byzantine)]
    for entry in schedule:
        if entry["fault"] == "crash":
            down.add(entry["replica"])
        elif entry["fault"] == "restart":
            assert entry["replica"] in down, "a restart of a replica that is up"
            down.discard(entry["replica"])
        counts.append(len(down | byzantine))
    return counts


@settings(max_examples=300, deadline=None)
@given(fault_schedules(4, adversaries=tuple(ADVERSARIES)))
def test_normalised_schedules_keep_their_bounds(schedule):
    """Never more than f replicas faulty at once, timed faults in time order within the fault
    window, untimed entries first, and normalising twice changes nothing."""
    normal = normalise(schedule, 4)
    assert normalise(normal, 4) == normal
    assert max(_faulty_over_time(normal)) <= 1
    timed = [e["at_ms"] for e in normal if "at_ms" in e]
    assert timed == sorted(timed) and all(0 <= t <= FAULT_WINDOW_MS for t in timed)
    untimed = [i for i, e in enumerate(normal) if "at_ms" not in e]
    assert untimed == list(range(len(untimed)))


def test_normalise_drops_what_would_break_the_bounds():
    schedule = [
        {"fault": "byzantine", "replica": 3, "behaviour": "colluding_backup", "target": 1},
        {"at_ms": 50, "fault": "crash", "replica": 1, "torn": False},     # 2 faulty > f
        {"at_ms": 60, "fault": "restart", "replica": 2, "wipe": False},   # 2 is not down
        {"at_ms": 70, "fault": "partition", "from": [1], "to": [1], "one_way": False},
        {"at_ms": 10, "fault": "clog", "from": 0, "to": 2, "for_ms": 10_000},
    ]
    assert normalise(schedule, 4) == [
        schedule[0], {"at_ms": 10, "fault": "clog", "from": 0, "to": 2, "for_ms": 3_000}]
    assert len(normalise(schedule, 4, faulty_max=2)) == 3


@pytest.mark.parametrize("entry", [
    {"at_ms": 10, "fault": "meteor"},
    {"at_ms": FAULT_WINDOW_MS + 1, "fault": "heal"},
    {"at_ms": 10, "fault": "crash", "replica": 9, "torn": False},
    {"fault": "byzantine", "replica": 0, "behaviour": "no_such_behaviour"},
])
def test_normalise_refuses_a_bad_entry(entry):
    """A hand-edited replay file with an unknown or out-of-range fault is refused, not run."""
    with pytest.raises(ValueError):
        normalise([entry], 4)


@given(st.integers(0, 3))
@settings(max_examples=4, deadline=None)
def test_a_crash_in_the_schedule_happens(replica):
    sim = build_simulation(1, [{"at_ms": 100, "fault": "crash", "replica": replica,
                                "torn": False}])
    sim.run(until_ms=200)
    assert sim.down == {replica}


# ------------------------------------------------------------------ the command lines


def _python(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], check=False, capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_cli_search_prints_the_schedule_and_a_replay_command_that_replays_it(tmp_path):
    """`python -m simulations.search` prints the minimal schedule and the one command that
    replays it (STYLE 11); that command reproduces the violation and the trace hash."""
    searched = _python("simulations.search", "--broken", "reexecute", "--benign", "--checker",
                       "exactly_once", "--examples", "100", "--replay-dir", "replays",
                       cwd=tmp_path)
    assert searched.returncode == 1, searched.stderr
    command = searched.stdout.strip().splitlines()[-1]
    assert command.startswith("replay: python -m simulations replay replays/search-reexecute-")
    path = command.split()[-1]
    trace = json.loads((tmp_path / path).read_text())["trace_hash"]
    assert f"trace {trace}" in searched.stdout
    replayed = _python("simulations", "replay", path, cwd=tmp_path)
    assert replayed.returncode == 1
    assert f"trace={trace}" in replayed.stdout and "exactly_once" in replayed.stdout
    assert "differs" not in replayed.stderr


def test_cli_search_reports_nothing_found_for_the_correct_replica(tmp_path):
    result = _python("simulations.search", "--examples", "5", "--checker", "agreement",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no failing schedule for the correct Replica in 5 examples" in result.stdout


def test_every_broken_replica_is_searched():
    assert set(TARGETS) == set(BROKEN)


#: What the search found for the amnesiac replica (shrunk): the primary dies in a write whose
#: PRE-PREPARE had already left and restarts 81 ms later in the same view.
AMNESIAC = [
    {"at_ms": 0, "fault": "crash", "replica": 0, "torn": "votes"},
    {"at_ms": 81, "fault": "restart", "replica": 0, "wipe": False},
]


def test_the_amnesiac_schedule_breaks_only_the_replica_that_forgets_its_early_votes():
    """N10 across a crash: with the schedule the search found, a primary that forgets the
    PRE-PREPARE it sent before it was durable proposes another batch at the same number
    (single_vote); the correct Replica withholds it and passes (pinned seed 4)."""
    broken = run_schedule(4, AMNESIAC, BROKEN["amnesiac"])
    assert "single_vote" in {v.checker for v in broken.violations}
    correct = run_schedule(4, AMNESIAC, Replica)
    assert correct.violations == [], [v.as_dict() for v in correct.violations]
