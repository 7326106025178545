"""Evidence checkers (issue 14, item 1; `simulations.evidence`): every PREPARE, COMMIT,
execution, installed NEW-VIEW and VIEW-CHANGE of a correct replica is checked against what the
engine delivered to it. Each check is shown to catch a deliberately broken replica
(`simulations.broken`) that the correct replica's run of the same seed does not trip; the
recording itself (whose votes count, what survives a crash, garbage collection) is tested on
hand-made deliveries.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pbft.codec import signing_payload
from pbft.messages import Commit, LoggedBatch, Prepare, PreparedCertificate, PrePrepare
from simulations import checkers
from simulations.broken import BROKEN, EVIDENCE_BROKEN, use_replica_class
from simulations.byzantine import Behaviour
from simulations.engine import Simulation
from simulations.scenarios import CATALOGUE, run_scenario

# ------------------------------------------------------------------ broken replicas are caught

#: (broken replica, catalogue scenario, seeds swept, evidence checker). The five bugs of issue
#: 14 (and an unchecked NEW-VIEW): the outcome checkers missed three of the five in a sweep.
EVIDENCE_CAUGHT = [
    ("double_vote", "lossy", range(1, 6), "commit_evidence"),                 # N4: distinct
    ("mismatched_digest", "byz_phantom_votes", range(1, 6), "commit_evidence"),  # N4: matching
    ("primary_prepare", "byz_preparing_primary", range(1, 4), "commit_evidence"),  # N4: backups
    ("commit_on_2f", "baseline", range(1, 4), "execution_evidence"),          # N5: 2f + 1
    ("view_change_without_certificates", "crash_primary", range(1, 4),
     "view_change_evidence"),                                                 # V1: P
    ("unchecked_new_view", "byz_forged_new_view", range(1, 4), "new_view_evidence"),  # V3
    ("watermark_off_by_one", "byz_pushed_commit_certificates", range(1, 4),
     "execution_evidence"),                                                   # N3: ≤ H
]


@pytest.mark.parametrize(("broken", "where", "seeds", "checker"), EVIDENCE_CAUGHT,
                         ids=[c[0] for c in EVIDENCE_CAUGHT])
def test_broken_replica_is_caught_by_its_evidence_checker(broken, where, seeds, checker):
    """N4, N5, V1, V3 checked step by step: with the broken replica everywhere, some seed of a
    few makes `checker` name a correct replica; the correct `Replica` passes that run."""
    entry = CATALOGUE[where]
    for seed in seeds:
        cls = {**BROKEN, **EVIDENCE_BROKEN}[broken]
        result = run_scenario(entry, seed, use_replica_class(entry.build(seed), cls))
        caught = [v for v in result.violations if v.checker == checker]
        if caught:
            break
    else:
        pytest.fail(f"no {checker} violation for {broken} in {where} seeds {list(seeds)}")
    for v in caught:
        assert len(v.replicas) == 1 and v.replicas[0] not in result.faulty
    control = run_scenario(entry, seed)
    assert control.violations == [], [v.as_dict() for v in control.violations]


def test_every_evidence_broken_replica_is_caught():
    assert set(EVIDENCE_BROKEN) <= {c[0] for c in EVIDENCE_CAUGHT}


def test_evidence_is_judged_in_every_run():
    """The evidence checker is one of the safety checkers `run_scenario` applies."""
    assert checkers.evidence in checkers.SAFETY_CHECKERS


# ------------------------------------------------------------------ what counts as evidence


def _sim(**options) -> Simulation:
    """A simulation that never runs: deliveries and sends are fed to its evidence by hand."""
    return Simulation(seed=1, clients=0, **options)


def _vote(sim: Simulation, kind, sequence: int, signer: int, digest: bytes = b"d" * 32,
          view: int = 0, replica: int | None = None):
    vote = kind(view, sequence, digest, signer if replica is None else replica, b"")
    return replace(vote, signature=sim.signers[signer].sign(signing_payload(vote)))


def _pre_prepare(sim: Simulation, sequence: int, digest: bytes = b"d" * 32) -> PrePrepare:
    pp = PrePrepare(0, sequence, digest, 0, (), 0, b"")
    return replace(pp, signature=sim.signers[0].sign(signing_payload(pp)))


class _Outbound:
    def __init__(self, message) -> None:
        self.message = message


def _deliver(sim: Simulation, destination: int, source, message) -> None:
    sim.evidence.on_delivery[type(message)](destination, source, message)


def _findings(sim: Simulation) -> list[tuple[str, int | None, int]]:
    return [(checker, sequence, replica)
            for checker, _, sequence, replica in sim.evidence.findings]


def test_a_commit_needs_the_pre_prepare_and_2f_prepares_of_distinct_backups():
    """N4: replica 1's COMMIT at sequence 1 is judged on what it was delivered: the primary's
    PREPARE, a duplicate and a vote for another digest do not count; a second backup's does."""
    sim = _sim()
    _deliver(sim, 1, 0, _pre_prepare(sim, 1))
    sim.evidence.sent(1, [_Outbound(_vote(sim, Prepare, 1, 1))])
    _deliver(sim, 1, 0, _vote(sim, Prepare, 1, 0))                      # the primary's
    _deliver(sim, 1, 2, _vote(sim, Prepare, 1, 2, digest=b"x" * 32))    # another digest
    _deliver(sim, 1, 3, _vote(sim, Prepare, 1, 1))                      # replica 1's, relayed
    sim.evidence.sent(1, [_Outbound(_vote(sim, Commit, 1, 1))])
    assert _findings(sim) == [("commit_evidence", 1, 1)]
    _deliver(sim, 1, 2, _vote(sim, Prepare, 1, 2))
    sim.evidence.sent(1, [_Outbound(_vote(sim, Commit, 1, 1))])
    assert _findings(sim) == [("commit_evidence", 1, 1)]  # no new finding
    sim.evidence.sent(2, [_Outbound(_vote(sim, Prepare, 1, 2))])  # no PRE-PREPARE at 2
    sim.evidence.sent(0, [_Outbound(_vote(sim, Prepare, 1, 0))])  # the primary prepares
    assert _findings(sim)[1:] == [("prepare_evidence", 1, 2), ("prepare_evidence", 1, 0)]


def test_a_vote_counts_only_for_the_replica_that_really_sent_it():
    """What a signature check rejects is no evidence: a vote naming another replica counts only
    with that replica's signature (relayed COMMITs of a commit certificate do), and a Byzantine
    replica's own votes only with a valid signature."""
    sim = _sim()
    sim.add_behaviour(3, Behaviour())
    commits = sim.evidence.of[1].commits
    key = (0, 1, b"d" * 32)
    unsigned = Commit(0, 1, b"d" * 32, 2, b"\0" * 64)
    _deliver(sim, 1, 0, unsigned)                          # names 2, comes from 0, not signed
    _deliver(sim, 1, 3, replace(unsigned, replica=3))      # Byzantine, not signed
    assert key not in commits
    _deliver(sim, 1, 0, _vote(sim, Commit, 1, 2))          # relayed, signed by 2
    _deliver(sim, 1, 3, _vote(sim, Commit, 1, 3))          # Byzantine, signed
    _deliver(sim, 1, 0, Commit(0, 1, b"d" * 32, 0, b""))   # over its own correct link
    assert commits[key] == {0, 2, 3}
    assert (1, b"d" * 32) in sim.evidence.of[1].committed
    sim.evidence.executed(1, 1, b"d" * 32)
    sim.evidence.executed(2, 1, b"d" * 32)
    assert _findings(sim) == [("execution_evidence", 1, 2)]


def test_a_logged_batch_is_evidence_by_its_signatures():
    """A commit certificate (LOGGED-BATCH) from another replica: its PRE-PREPARE and COMMITs
    count as signed by their authors; a forged COMMIT inside it does not."""
    sim = _sim()
    pp = _pre_prepare(sim, 1)
    forged = Commit(0, 1, pp.digest, 3, b"\0" * 64)
    batch = LoggedBatch(pp, (_vote(sim, Commit, 1, 0), _vote(sim, Commit, 1, 1), forged))
    _deliver(sim, 2, 1, batch)
    evidence = sim.evidence.of[2]
    assert (0, 1, pp.digest) in evidence.pre_prepares
    assert evidence.commits[(0, 1, pp.digest)] == {0, 1}
    assert (1, pp.digest) not in evidence.committed


def test_a_restarted_replica_keeps_only_the_evidence_its_records_hold():
    """Crash recovery: what it was delivered before the crash counts after it only where its
    durable records still hold it (a persisted PRE-PREPARE, prepared certificate, own vote);
    records it was never delivered prove nothing; a wiped replica starts from nothing."""
    sim = _sim()
    pp1, pp2, pp3 = (_pre_prepare(sim, s) for s in (1, 2, 3))
    for pp in (pp1, pp2):
        _deliver(sim, 1, 0, pp)
        _deliver(sim, 1, 2, _vote(sim, Prepare, pp.sequence, 2))
        sim.evidence.sent(1, [_Outbound(_vote(sim, Prepare, pp.sequence, 1))])
    sim.evidence.sent(1, [_Outbound(_vote(sim, Commit, 1, 1))])
    certificate = PreparedCertificate(pp1, (_vote(sim, Prepare, 1, 1), _vote(sim, Prepare, 1, 2)))
    records = [pp1, certificate, _vote(sim, Commit, 1, 1), pp3]  # pp2 lost, pp3 never delivered
    sim.evidence.restarted(1, records, wiped=False, low=0)
    evidence = sim.evidence.of[1]
    key = (0, 1, b"d" * 32)
    assert evidence.pre_prepares == {key}
    assert evidence.prepares == {key: {1, 2}}
    assert evidence.commits == {key: {1}}
    assert evidence.prepared == {1: (0, b"d" * 32)}
    sim.evidence.sent(1, [_Outbound(_vote(sim, Prepare, 2, 1))])
    assert _findings(sim) == [("prepare_evidence", 2, 1)]
    sim.evidence.restarted(1, records, wiped=True, low=0)
    assert sim.evidence.of[1].pre_prepares == set() and sim.evidence.of[1].prepared == {}


def test_evidence_at_or_below_the_stable_checkpoint_is_dropped_and_not_recorded():
    """Bounded: collection at the stable checkpoint drops what lies at or below it, and votes
    below it or beyond two log windows above it are not recorded."""
    sim = _sim()
    for sequence in (8, 9):
        _deliver(sim, 1, 2, _vote(sim, Prepare, sequence, 2))
    sim.evidence.collect(1, 8)
    window = sim.config.log_window
    for sequence in (5, 8 + 2 * window + 1):
        _deliver(sim, 1, 2, _vote(sim, Prepare, sequence, 2))
    assert list(sim.evidence.of[1].prepares) == [(0, 9, b"d" * 32)]


def test_a_view_change_must_report_what_its_replica_committed_in_earlier_views():
    """V1: a VIEW-CHANGE above whose stable checkpoint the replica sent a COMMIT needs a prepared
    certificate of that view or later for it; below the stable checkpoint it needs none."""
    from pbft.messages import ViewChange

    sim = _sim()
    _deliver(sim, 1, 0, _pre_prepare(sim, 9))
    sim.evidence.sent(1, [_Outbound(_vote(sim, Commit, 9, 1))])
    certificate = PreparedCertificate(_pre_prepare(sim, 9), ())
    with_it = ViewChange(1, 0, (), (certificate,), 1, b"")
    sim.evidence.sent(1, [_Outbound(with_it)])
    sim.evidence.sent(1, [_Outbound(replace(with_it, prepared=(), stable_sequence=16))])
    assert [f for f in _findings(sim) if f[0] == "view_change_evidence"] == []
    sim.evidence.sent(1, [_Outbound(replace(with_it, prepared=()))])
    assert [f for f in _findings(sim) if f[0] == "view_change_evidence"] == [
        ("view_change_evidence", 9, 1)]


def test_new_view_evidence_recomputes_v2_from_the_view_changes_inside():
    """V2/V3, computed independently of the core: the plan is, per sequence number above the
    highest stable checkpoint, the digest of the highest-view certificate, or a null request."""
    from pbft.messages import NULL_DIGEST, ViewChange

    sim = _sim()
    low = replace(_pre_prepare(sim, 10, b"a" * 32), view=0)
    high = replace(_pre_prepare(sim, 10, b"b" * 32), view=1, replica=1)
    far = _pre_prepare(sim, 12, b"c" * 32)
    view_changes = [
        ViewChange(2, 8, (), (PreparedCertificate(low, ()), PreparedCertificate(far, ())), 0, b""),
        ViewChange(2, 8, (), (PreparedCertificate(high, ()),), 1, b""),
        ViewChange(2, 0, (), (), 2, b""),
    ]
    assert sim.evidence.plan(view_changes) == [
        (9, NULL_DIGEST, 0), (10, b"b" * 32, 0), (11, NULL_DIGEST, 0), (12, b"c" * 32, 0)]


def test_a_simulation_without_evidence_records_nothing():
    sim = Simulation(seed=1, requests_per_client=2, evidence=False)
    assert sim.evidence is None
    assert sim.run(until_ms=5_000)
    assert checkers.evidence(sim) == []


def test_evidence_checks_a_correct_replica_also_when_it_is_down_at_the_end():
    """Replicas down when the run ends are judged for what they did while up: a finding of a
    replica crashed for good is reported; a Byzantine replica's is not."""
    sim = Simulation(seed=1, requests_per_client=0)
    sim.evidence.findings.append(("execution_evidence", "x", 3, 2))
    sim.evidence.findings.append(("execution_evidence", "y", 3, 1))
    sim.down.add(2)
    sim.add_behaviour(1, Behaviour())
    assert [v.replicas for v in checkers.evidence(sim)] == [(2,)]


def test_a_byzantine_primary_s_pre_prepare_counts_only_with_the_batch_its_digest_names():
    """N3: a backup checks the batch against the digest, so a PRE-PREPARE from a Byzantine
    primary whose batch does not hash to its digest is no evidence; one that does is."""
    from pbft.codec import batch_digest
    from pbft.messages import Request

    sim = _sim()
    sim.add_behaviour(0, Behaviour())
    requests = (Request(b"op", 1, b"c" * 32, False, b""),)
    good = PrePrepare(0, 1, batch_digest(5, requests), 5, requests, 0, b"")
    for pp in (good, replace(good, sequence=2, digest=b"w" * 32)):
        _deliver(sim, 1, 0, replace(pp, signature=sim.signers[0].sign(signing_payload(pp))))
    assert sim.evidence.of[1].pre_prepares == {(0, 1, good.digest)}


# ------------------------------------------------------------------ sweeps that survive their runs


class _Raising(Behaviour):
    """A behaviour with a bug: it raises at its 10th outgoing message."""

    description = "raises"
    sent = 0

    def outgoing(self, to, message):
        self.sent += 1
        if self.sent == 10:
            raise RuntimeError("behaviour bug")
        return [(to, message)]


def _cli_catalogue(monkeypatch, tmp_path):
    """Three small scenarios in the catalogue (a behaviour that raises, a set-up that raises,
    a broken replica) and replay files under `tmp_path`."""
    import simulations.__main__ as cli
    from simulations.scenarios import Scenario

    def small(seed: int, **options) -> Simulation:
        return Simulation(seed=seed, clients=2, requests_per_client=5, **options)

    def setup_bug(seed: int) -> Simulation:
        raise ValueError("set-up bug")

    entries = {
        "t_raising_behaviour": lambda seed: small(seed, behaviours={3: _Raising()}),
        "t_setup_bug": setup_bug,
        "t_broken": lambda seed: use_replica_class(small(seed), BROKEN["commit_on_2f"]),
        "t_fine": small,
    }
    for name, build in entries.items():
        monkeypatch.setitem(CATALOGUE, name, Scenario(name, "", build))
    monkeypatch.setattr(cli, "REPLAY_DIR", tmp_path / "replays")
    return cli


def test_a_sweep_goes_on_after_a_run_raises_and_exits_3(monkeypatch, tmp_path, capsys):
    """Issue 14, item 5: an exception in a behaviour or in a scenario's set-up is a finding with
    a replay file; the other runs of the sweep still run; exit 3 (a run crashed) wins over 1."""
    cli = _cli_catalogue(monkeypatch, tmp_path)
    csv_path = tmp_path / "sweep.csv"
    status = cli.main(["sweep", "--scenarios", "t_raising_behaviour,t_setup_bug,t_fine",
                       "--seeds", "1-2", "--workers", "1", "--csv", str(csv_path)])
    assert status == cli.EXIT_CRASHED
    assert len(csv_path.read_text().splitlines()) == 1 + 6
    replays = sorted(p.name for p in (tmp_path / "replays").iterdir())
    assert replays == ["t_raising_behaviour-seed1.json", "t_raising_behaviour-seed2.json",
                       "t_setup_bug-seed1.json", "t_setup_bug-seed2.json"]
    err = capsys.readouterr().err
    assert "RuntimeError: behaviour bug" in err and "ValueError: set-up bug" in err
    assert cli.main(["replay", str(tmp_path / "replays" / "t_setup_bug-seed1.json")]) == 3


def test_exit_statuses_distinguish_violations_usage_and_success(monkeypatch, tmp_path):
    cli = _cli_catalogue(monkeypatch, tmp_path)
    csv_path = str(tmp_path / "sweep.csv")
    assert cli.main(["sweep", "--scenarios", "t_broken,t_fine", "--seeds", "1", "--workers", "1",
                     "--csv", csv_path]) == cli.EXIT_VIOLATIONS
    assert cli.main(["run", "t_broken", "--seed", "1"]) == cli.EXIT_VIOLATIONS
    assert cli.main(["sweep", "--scenarios", "t_fine", "--seeds", "1", "--workers", "1",
                     "--csv", csv_path]) == cli.EXIT_OK
    assert cli.main(["sweep", "--scenarios", "no_such", "--seeds", "1", "--csv", csv_path]) == 2
    assert cli.main(["sweep", "--scenarios", "t_fine", "--seeds", "x-y", "--csv", csv_path]) == 2
    assert cli.main(["run", "no_such", "--seed", "1"]) == 2
    assert cli.main(["replay", str(tmp_path / "missing.json")]) == 2


def test_run_save_replay_writes_a_replay_file_for_a_passing_run(monkeypatch, tmp_path):
    cli = _cli_catalogue(monkeypatch, tmp_path)
    assert cli.main(["run", "t_fine", "--seed", "3"]) == 0
    assert not (tmp_path / "replays").exists()
    assert cli.main(["run", "t_fine", "--seed", "3", "--save-replay"]) == 0
    replay = tmp_path / "replays" / "t_fine-seed3.json"
    assert cli.main(["replay", str(replay)]) == 0


def test_help_documents_the_exit_statuses(capsys):
    import simulations.__main__ as cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for line in ("1  violations found", "2  usage error", "3  a run crashed"):
        assert line in out


# ------------------------------------------------------------------ liveness oracles (item 2)


@pytest.mark.parametrize("name", ["baseline", "partition_backup", "partition_primary",
                                  "crash_backup_restart", "crash_primary", "crash_all_restart"])
def test_liveness_oracles_are_on_in_benign_scenarios(name):
    """Issue 14, item 2: the request-wait and memory oracles judge the baseline, crash and
    partition scenarios with bounds from the configuration (`checkers.request_wait_bound_ms`,
    `sizes.replica_bytes_budget`), and the fault-free baseline allows no view change."""
    from pbft.core.sizes import replica_bytes_budget

    entry = CATALOGUE[name]
    assert entry.request_wait_bound_ms is checkers.request_wait_bound_ms
    assert entry.bytes_held_bound is replica_bytes_budget
    if name in ("baseline", "crash_backup_restart"):
        assert entry.needless_view_changes == 0


def test_a_replica_down_at_the_end_is_judged_for_what_it_did_while_up():
    """Issue 14, item 2: memory held and view changes asked for by a replica that crashed for
    good (counted faulty by `run_scenario`) are still judged; a Byzantine replica's are not."""
    sim = Simulation(seed=1, requests_per_client=0)
    sim.peak_bytes_held = {0: 10, 1: 10, 2: 5_000, 3: 10}
    sim.peak_bytes_held_at_ms = {0: 1, 1: 1, 2: 7, 3: 1}
    sim.view_changes_sent = {(2, 1)}
    sim.down.add(2)
    sim.faulty = {2}
    assert [v.replicas for v in checkers.bytes_held(sim, 1_000)] == [(2,)]
    assert [v.replicas for v in checkers.needless_view_changes(sim)] == [(2,)]
    sim.add_behaviour(2, Behaviour())
    assert checkers.bytes_held(sim, 1_000) == []
    assert checkers.needless_view_changes(sim) == []


def test_no_vote_above_the_high_watermark():
    """N3: a PREPARE or COMMIT above the sender's stable checkpoint + L (after the Ready that
    carries it) is a finding, however well it is otherwise supported."""
    sim = _sim()
    window = sim.config.log_window
    beyond = window + 1
    _deliver(sim, 1, 0, _pre_prepare(sim, beyond))
    sim.evidence.sent(1, [_Outbound(_vote(sim, Prepare, beyond, 1))], low=0)
    assert ("prepare_evidence", beyond, 1) in _findings(sim)
    before = len(_findings(sim))
    _deliver(sim, 2, 0, _pre_prepare(sim, beyond))
    sim.evidence.sent(2, [_Outbound(_vote(sim, Prepare, beyond, 2))], low=window)
    assert len(_findings(sim)) == before, "within its window once its checkpoint moved"


def test_no_execution_above_the_high_watermark():
    """N3: a first execution above the replica's stable checkpoint + L (read between its Ready
    and `advance()`) is a finding, even with its 2f + 1 COMMITs; at or below it, none."""
    sim = _sim()
    window = sim.config.log_window
    for sequence in (window, window + 1):
        for signer in range(3):
            _deliver(sim, 1, signer, _vote(sim, Commit, sequence, signer))
        sim.evidence.executed(1, sequence, b"d" * 32)
    assert _findings(sim) == [("execution_evidence", window + 1, 1)]
    assert "above its high watermark" in sim.evidence.findings[0][1]
