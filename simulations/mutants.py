"""Mutation self-test (issue 14, item 4): known PBFT-family bugs injected one at a time into a
copy of the core, to measure whether the simulator's scenarios and checkers find them.

    python -m simulations mutants [--fast] [--seeds 1-5] [--workers N] [--only a,b]

Each mutant is a small source patch: the text of one or more `pbft/core` modules is read, an
exact replacement is made (each `old` must occur exactly once, or `MutantDoesNotApply` is
raised: the core changed and the mutant must be rewritten, never silently skipped), and the
patched text is executed as a fresh module beside the real one. A patched dependency
(`view_change`, `quorum`, `log`, `state_transfer`) is bound into a patched copy of
`pbft.core.replica` in place of the real one; the real modules are never touched, so mutants and
the correct core run side by side in one process. Why patches rather than subclasses: the bugs
sit in the middle of methods (one comparison, one quorum size), where a subclass would have to
copy the whole method, and a copied method no longer follows the core when it changes; a patch
that no longer applies says so loudly instead.

The mutant replica class also inherits from the real `Replica` (after the patched one in its
MRO), so `isinstance(x, Replica)` holds as for any replica. A client-side mutant patches
`pbft.core.client` and replaces the `ClientSession` of every correct client of a simulation.

Each mutant names a focused list of places to run ("where"): a catalogue scenario, or a
scenario of this module (`MUTANT_SCENARIOS`, built for mutants no catalogue scenario reaches:
Byzantine replicas that forge signatures with a wrong key, or lie in their replies); in full
mode the whole catalogue follows. Runs stop at the first kill: a run with a violation whose
control run (the correct core, same place and seed) has none.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import sys
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pbft.app import ExecutionContext, KeyValueStore, kv_append
from pbft.codec import batch_digest
from pbft.core import ClientSession, Replica
from pbft.messages import Commit, LoggedBatch, Message, PrePrepare, Prepare, Reply, ViewChange

from .broken import ColludingBackup, use_replica_class
from .byzantine import Behaviour, Send
from .engine import Simulation
from .results import RunResult
from .scenarios import CATALOGUE, Scenario, run_scenario
from .search import SearchSetup, build_simulation

_CORE = Path(importlib.import_module("pbft.core").__file__).parent


class MutantDoesNotApply(RuntimeError):
    """A mutant's `old` text does not occur exactly once in the core module it patches."""


@dataclass(frozen=True)
class Patch:
    """Replace `old` (which must occur exactly once) by `new` in `pbft/core/<module>.py`."""

    module: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    #: The rule it breaks (docs/PBFT-RULES.md) and how, in one line.
    description: str
    patches: tuple[Patch, ...]
    #: Places to run it first: catalogue scenario names or `MUTANT_SCENARIOS` names.
    focus: tuple[str, ...]
    #: "replica": the patched Replica runs as every replica; "client": the patched
    #: ClientSession is every correct client's.
    side: str = "replica"


# ------------------------------------------------------------------ building patched modules


def patched_source(module: str, patches: Iterable[Patch]) -> str:
    """The text of `pbft/core/<module>.py` with `patches` (those for `module`) applied.
    Raises MutantDoesNotApply if an `old` text occurs zero or several times."""
    text = (_CORE / f"{module}.py").read_text()
    for patch in patches:
        if patch.module != module:
            continue
        count = text.count(patch.old)
        if count != 1:
            raise MutantDoesNotApply(
                f"pbft/core/{module}.py: the text to patch occurs {count} times, not once "
                f"(the core changed; rewrite the mutant):\n{patch.old}")
        text = text.replace(patch.old, patch.new)
    return text


def _exec_module(module: str, source: str, label: str) -> types.ModuleType:
    """A fresh module executed from `source`, resolving relative imports as `pbft.core`."""
    mod = types.ModuleType(f"pbft.core._mutant_{label}_{module}")
    mod.__package__ = "pbft.core"
    mod.__file__ = f"<mutant {label}: pbft/core/{module}.py>"
    code = compile(source, mod.__file__, "exec")
    # Registered under its own name (dataclasses look their module up there); the real
    # `pbft.core.<module>` is left alone.
    sys.modules[mod.__name__] = mod
    exec(code, mod.__dict__)  # noqa: S102 - our own core's text, patched
    return mod


def _rebind(target: types.ModuleType, real: types.ModuleType, patched: types.ModuleType) -> None:
    """Make `target` use `patched` wherever it imported `real` or a name from it."""
    for name, value in list(vars(target).items()):
        if name.startswith("__"):
            continue
        if value is real:
            setattr(target, name, patched)
        elif getattr(real, name, None) is value and hasattr(patched, name):
            setattr(target, name, getattr(patched, name))


_BUILT: dict[str, type] = {}


def build(mutant: Mutant) -> type:
    """The mutant's Replica subclass (side "replica") or ClientSession class (side "client").
    Raises MutantDoesNotApply if a patch does not apply."""
    if mutant.name in _BUILT:
        return _BUILT[mutant.name]
    modules = sorted({p.module for p in mutant.patches})
    main = "replica" if mutant.side == "replica" else "client"
    dependencies = {m: _exec_module(m, patched_source(m, mutant.patches), mutant.name)
                    for m in modules if m != main}
    top = _exec_module(main, patched_source(main, mutant.patches), mutant.name)
    for module, patched in dependencies.items():
        real = importlib.import_module(f"pbft.core.{module}")
        _rebind(top, real, patched)
        for other in dependencies.values():
            if other is not patched:
                _rebind(other, real, patched)
    if mutant.side == "replica":
        cls = type(f"Mutant_{mutant.name}", (top.Replica, Replica), {})
    else:
        cls = type(f"Mutant_{mutant.name}", (top.ClientSession, ClientSession), {})
    cls.__module__ = __name__
    _BUILT[mutant.name] = cls
    return cls


def use_client_class(sim: Simulation, cls: type) -> Simulation:
    """Give every correct client of a freshly built `sim` a session of class `cls` (its key,
    configuration and clock as before); Byzantine clients keep theirs. Returns `sim`."""
    if sim.events:
        raise RuntimeError("the simulation has already run")
    for client in sim.clients:
        if client.record.correct and type(client.session) is ClientSession:
            old = client.session
            client.session = cls(sim.config, sim.make_signer(client.record.name), old.now_ms)
    return sim


# ------------------------------------------------------------------ behaviours for mutants
#
# Forgers here sign with their own key where another replica's is due: the verifier refuses
# that (InsecureSigner is computable, but no behaviour uses that), so a correct replica drops
# the forgery as `bad_signature` / `bad_commit_certificate`, and a mutant that skips the check
# does not.


class ForgingColludingBackup(ColludingBackup):
    """ColludingBackup (its votes to `target` only, its prepared certificates hidden), whose
    COMMITs to `target` come with copies claiming each other backup as their sender, signed
    with its own key: a replica that does not verify COMMIT signatures commits on them alone."""

    description = "colluding backup that forges COMMITs in the other replicas' names"

    def outgoing(self, to: tuple, message: Message) -> Send:
        sent = super().outgoing(to, message)
        if type(message) is Commit and self.target in to:
            context = self.context
            for claimed in context.others:
                if claimed != self.target:
                    sent.append(((self.target,), context.sign(replace(message, replica=claimed))))
        return sent


class ForgedCommitCertificates(Behaviour):
    """A Byzantine primary that answers FETCH-LOG with another batch at each sequence number
    (the same requests a millisecond later: another digest, a valid PRE-PREPARE it signs as
    the primary it is) and 2f + 1 COMMITs for it in every replica's name, signed with its own
    key. A catching-up replica that does not verify the COMMITs inside a LoggedBatch executes
    a batch nobody committed."""

    description = "serves LoggedBatches with forged commit certificates"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if type(message) is LoggedBatch and message.commits and message.pre_prepare.requests:
            context = self.context
            pp = message.pre_prepare
            digest = batch_digest(pp.timestamp_ms + 1, pp.requests)
            forged_pp = context.sign(replace(pp, timestamp_ms=pp.timestamp_ms + 1, digest=digest,
                                             signature=b""))
            commits = tuple(
                context.sign(Commit(pp.view, pp.sequence, digest, r, b""))
                for r in range(context.config.n))
            message = LoggedBatch(forged_pp, commits)
        return [(to, message)]


#: A result no correct replica returns for any append of the workload.
_FORGED_RESULT = KeyValueStore().execute(kv_append("key-0", b"forged;"),
                                         ExecutionContext(1, b"", 0))


class LyingReplies(Behaviour):
    """Answers every ordered request with a made-up result, at once."""

    description = "replies with made-up results"

    def outgoing(self, to: tuple, message: Message) -> Send:
        if type(message) is Reply and not message.read_only:
            message = replace(message, result=_FORGED_RESULT)
        return [(to, message)]


class PreparingEquivocator(Behaviour):
    """A Byzantine primary that sends a second PRE-PREPARE (another batch timestamp, so
    another digest) to `target` in place of the one the others get, with a PREPARE of its own
    for each digest, to whoever got that PRE-PREPARE; silent from `silent_from_ms` on. A backup
    that counts the primary's PREPARE prepares the twin alone, and its VIEW-CHANGE carries a
    certificate with one PREPARE, which the others refuse."""

    description = "equivocating primary that also sends PREPAREs"

    def __init__(self, target: int = 3, silent_from_ms: int = 1_500) -> None:
        self.target = target
        self.silent_from_ms = silent_from_ms

    def outgoing(self, to: tuple, message: Message) -> Send:
        context = self.context
        if context.now_ms >= self.silent_from_ms and type(message) in (PrePrepare, Prepare,
                                                                           Commit):
            return []
        if type(message) is not PrePrepare or not message.requests:
            return [(to, message)]
        twin_digest = batch_digest(message.timestamp_ms + 1, message.requests)
        twin = context.sign(replace(message, timestamp_ms=message.timestamp_ms + 1,
                                    digest=twin_digest, signature=b""))
        others = tuple(r for r in to if r != self.target)
        sent: list = []
        if others:
            sent.append((others, message))
            sent.append((others, context.sign(
                Prepare(message.view, message.sequence, message.digest, context.replica_id, b""))))
        if self.target in to:
            sent.append(((self.target,), twin))
            sent.append(((self.target,), context.sign(
                Prepare(message.view, message.sequence, twin_digest, context.replica_id, b""))))
        return sent


# ------------------------------------------------------------------ scenarios for mutants

_SETUP = SearchSetup()


def _colluding(behaviour: Callable[[], Behaviour]) -> Callable[[int], Simulation]:
    """What simulations.search found for the quorum bugs: a little loss, and replica 0 (the
    primary of view 0) colluding with replica 1."""

    def make(seed: int) -> Simulation:
        schedule = [{"fault": "network", "latency_ms_min": 1, "latency_ms_max": 4,
                     "loss_percent": 4, "duplication_percent": 0}]
        sim = build_simulation(seed, schedule, Replica, _SETUP)
        sim.add_behaviour(0, behaviour())
        return sim

    return make


def _equivocating(seed: int) -> Simulation:
    from .byzantine import EquivocatingPrimary

    sim = build_simulation(seed, [], Replica, _SETUP)
    sim.add_behaviour(0, EquivocatingPrimary(3, 3))
    return sim


def _forged_commit_certificates(seed: int) -> Simulation:
    # Light load and a short cut: replica 3 falls behind by less than a log window, so it
    # catches up from the log (asking 0 first, S1), not by state transfer.
    sim = Simulation(seed=seed, clients=2, think_ms=200,
                     behaviours={0: ForgedCommitCertificates()})
    sim.at(300, lambda s: s.network.isolate(3, [0, 1, 2]))
    sim.at(400 + seed % 5 * 50, lambda s: s.network.heal())
    return sim


def _lying_replies(seed: int) -> Simulation:
    return Simulation(seed=seed, behaviours={1 + seed % 3: LyingReplies()})


def _preparing_equivocator(seed: int) -> Simulation:
    return Simulation(seed=seed, behaviours={0: PreparingEquivocator(3, 1_000 + seed % 5 * 200)})


def _search_scenario(name: str, description: str, build_fn: Callable[[int], Simulation]) -> Scenario:
    return Scenario(name, description, build_fn, until_ms=_SETUP.until_ms,
                    liveness_bound_ms=_SETUP.liveness_bound_ms)


MUTANT_SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    _search_scenario("mut_colluding_backup", "replica 0 votes to replica 1 only (twice) and "
                     "hides its certificates; 4% loss", _colluding(lambda: ColludingBackup(1))),
    _search_scenario("mut_forging_colluding_backup", "as mut_colluding_backup, and its COMMITs "
                     "to 1 come with copies in 2's and 3's names, signed with its own key",
                     _colluding(lambda: ForgingColludingBackup(1))),
    _search_scenario("mut_equivocating_primary", "the primary sends each PRE-PREPARE's twin "
                     "3 ms after it", _equivocating),
    Scenario("mut_forged_commit_certificates", "backup 3 is cut off for 0.1-0.3 s; the primary "
             "answers its FETCH-LOG with other batches and forged COMMITs",
             _forged_commit_certificates),
    Scenario("mut_lying_replies", "a backup replies with made-up results", _lying_replies),
    Scenario("mut_preparing_equivocator", "the primary sends backup 3 another PRE-PREPARE than "
             "the others, with a PREPARE of its own for each, then falls silent",
             _preparing_equivocator, liveness_bound_ms=20_000),
)}


def where(name: str) -> Scenario:
    """The scenario called `name` (this module's, or the catalogue's). Raises KeyError."""
    return MUTANT_SCENARIOS[name] if name in MUTANT_SCENARIOS else CATALOGUE[name]


# ------------------------------------------------------------------ the catalogue of mutants

_R = "replica"


def _p(module: str, old: str, new: str) -> Patch:
    return Patch(module, old, new)


MUTANTS: tuple[Mutant, ...] = (
    Mutant("duplicate_votes", "N10: a second PREPARE or COMMIT from one sender counts again", (
        _p(_R, '        if prepare.replica in entry.prepares:\n'
               '            self.dropped["duplicate_vote"] += 1\n            return\n', ''),
        _p(_R, '        entry.prepares[sender] = prepare\n',
               '        entry.prepares[sender if sender not in entry.prepares\n'
               '                       else (sender, len(entry.prepares))] = prepare\n'),
        _p(_R, '        if sender in entry.commits:\n'
               '            self.dropped["duplicate_vote"] += 1\n            return\n', ''),
        _p(_R, '        entry.commits[sender] = commit\n',
               '        entry.commits[sender if sender not in entry.commits\n'
               '                      else (sender, len(entry.commits))] = commit\n'),
    ), ("mut_colluding_backup", "recovery_bank_crash_all_duplication", "lossy")),
    Mutant("mismatched_digest_votes", "N4/N5: PREPAREs and COMMITs count whatever digest they "
           "carry", (
        _p(_R, '        if entry.pre_prepare is not None and entry.pre_prepare.digest != '
               'prepare.digest:\n', '        if False:\n'),
        _p(_R, '        if entry.pre_prepare is not None and entry.pre_prepare.digest != '
               'commit.digest:\n', '        if False:\n'),
        _p(_R, '        if discarded := entry.discard_mismatched_votes():\n',
               '        if discarded := 0:\n'),
        _p("log", '        return sum(1 for p in self.prepares.values() if p.digest == digest)\n',
               '        return len(self.prepares)\n'),
        _p("log", '        return sum(1 for c in self.commits.values() if c.digest == digest)\n',
               '        return len(self.commits)\n'),
    ), ("mut_equivocating_primary", "byz_equivocating_primary", "byz_phantom_votes",
        "byz_n7_equivocation_and_phantom_votes")),
    Mutant("primary_prepare_counted", "N4: the primary's PREPARE counts towards the 2f", (
        _p(_R, '                and sender != self.view % self._n\n', ''),
        _p(_R, 'self._reject_vote(prepare, from_primary)',
               'self._reject_vote(prepare, False)'),
    ), ("mut_preparing_equivocator", "byz_equivocating_primary")),
    Mutant("commit_on_2f", "N5: committed-local on 2f matching COMMITs", (
        _p(_R, 'if len(entry.commits) < self._quorum or entry.matching_commits() < '
               'self._quorum:',
               'if len(entry.commits) < self._quorum - 1 or entry.matching_commits() < '
               'self._quorum - 1:'),
    ), ("mut_colluding_backup",)),
    Mutant("view_change_without_certificates", "V1: VIEW-CHANGEs carry no prepared "
           "certificates", (
        _p(_R, '            if s > self.stable_checkpoint\n        )\n        message = '
               'self._sign(ViewChange(',
               '            if s > self.stable_checkpoint and False\n        )\n        message = '
               'self._sign(ViewChange('),
    ), ("partition_primary", "batching_lossy_primary_cut", "crash_primary",
        "byz_crash_after_pre_prepare", "byz_equivocating_new_view")),
    Mutant("older_view_votes", "N4/N5: PREPAREs and COMMITs of an older view count in the "
           "current one", (
        _p(_R, 'if not (prepare.view == self.view and', 'if not (prepare.view <= self.view and'),
        _p(_R, 'if not (commit.view == self.view and', 'if not (commit.view <= self.view and'),
        _p(_R, '        if vote.view != self.view or not self.view_active:\n',
               '        if vote.view > self.view or not self.view_active:\n'),
    ), ("byz_stale_votes_behind_new_view", "byz_replay_during_view_change", "byz_replay",
        "partition_primary")),
    Mutant("commit_signature_unverified", "N5: COMMIT signatures are not verified", (
        _p(_R, 'signing_payload(commit),\n                                     '
               'commit.signature):',
               'signing_payload(commit),\n                                     '
               'commit.signature) and False:'),
    ), ("mut_forging_colluding_backup", "byz_forged_signatures")),
    Mutant("logged_batch_commit_signatures_unverified", "S1/N5: the COMMITs inside a served "
           "batch (LoggedBatch) are not verified", (
        _p(_R, '                or not self._verify_replica_signature(commit)\n            ):',
               '                or False\n            ):'),
    ), ("mut_forged_commit_certificates",)),
    Mutant("new_view_2f", "V3: a NEW-VIEW with 2f VIEW-CHANGEs is accepted", (
        _p("view_change", '    if len(senders) < quorum.quorum(config.n):\n'
                          '        return "bad_new_view"\n',
                          '    if len(senders) < quorum.quorum(config.n) - 1:\n'
                          '        return "bad_new_view"\n'),
    ), ("byz_short_new_view", "byz_equivocating_new_view", "byz_forged_new_view")),
    Mutant("new_view_tail_dropped", "V3: a NEW-VIEW whose O-set lacks its tail is accepted", (
        _p("view_change", '    if len(plan) != len(message.pre_prepares):\n',
                          '    if len(plan) < len(message.pre_prepares):\n'),
    ), ("byz_truncated_new_view", "byz_equivocating_new_view", "byz_forged_new_view",
        "byz_twins_next_primary")),
    Mutant("certificate_other_digest", "V1: a prepared certificate whose PREPAREs carry another "
           "digest than its PRE-PREPARE is accepted", (
        _p("view_change", '            or prepare.digest != pre_prepare.digest\n', ''),
    ), ("byz_swapped_prepared_certificate", "byz_forged_prepared_certificate",
        "byz_n7_twins_and_forged_certificates")),
    Mutant("checkpoint_proof_2f", "C2: 2f matching CHECKPOINTs make a checkpoint stable, and "
           "prove one in a VIEW-CHANGE", (
        _p("quorum", '    needed = quorum(n)\n', '    needed = quorum(n) - 1\n'),
        _p("view_change", '    if len(senders) < quorum.quorum(config.n):\n'
                          '        return "bad_checkpoint_proof"\n',
                          '    if len(senders) < quorum.quorum(config.n) - 1:\n'
                          '        return "bad_checkpoint_proof"\n'),
    ), ("byz_false_checkpoints", "byz_forged_checkpoint_proof", "byz_late_checkpoints",
        "crash_wipe_disk")),
    # Not equivalent, though C2' stashes PRE-PREPAREs, PREPAREs and COMMITs at H + 1 before
    # this bound is consulted: a LOGGED-BATCH (a commit certificate) is checked against it
    # directly, and the mutant then executes H + 1 before its window moves (N3 broken, the
    # core's `last_executed <= high_watermark` invariant fails). A lagging window and
    # certificates pushed unasked reach it (byz_pushed_commit_certificates).
    Mutant("watermark_off_by_one", "N3: a sequence number one above the high watermark is "
           "accepted", (
        _p(_R, '        if sequence > self.stable_checkpoint + self._log_window:\n'
               '            return "above_high_watermark"\n',
               '        if sequence > self.stable_checkpoint + self._log_window + 1:\n'
               '            return "above_high_watermark"\n'),
    ), ("byz_pushed_commit_certificates", "byz_beyond_high_watermark",
        "byz_sequence_off_by_one", "byz_late_checkpoints")),
    Mutant("reply_on_f", "N7: the client accepts a result on f matching replies", (
        Patch("client", '        self._reply_quorum = quorum.reply_quorum(config.n)\n',
              '        self._reply_quorum = quorum.reply_quorum(config.n) - 1\n'),
    ), ("mut_lying_replies",), side="client"),
    Mutant("timestamp_check_inverted", "N8: the request timestamp check is inverted (a newer "
           "request counts as old)", (
        _p(_R, 'if record is not None and request.timestamp <= record.timestamp and not '
               'request.read_only:',
               'if record is not None and request.timestamp >= record.timestamp and not '
               'request.read_only:'),
    ), ("baseline",)),
    Mutant("state_transfer_digest_unchecked", "S1': fetched chunks are not checked against the "
           "proven digest", (
        _p("state_transfer", '        if not verify_chunk(self.digest, self._chunk_bytes, '
                             'chunk):\n', '        if False:\n'),
    ), ("byz_corrupt_snapshot", "byz_slow_state_source")),
)

MUTANTS_BY_NAME: dict[str, Mutant] = {m.name: m for m in MUTANTS}

#: The subset run in CI (`--fast`): one per kind of checker that kills them, and the four that
#: only a dedicated adversary kills (older_view_votes, new_view_2f, certificate_other_digest,
#: watermark_off_by_one).
FAST = ("commit_on_2f", "timestamp_check_inverted", "reply_on_f",
        "logged_batch_commit_signatures_unverified", "older_view_votes", "new_view_2f",
        "certificate_other_digest", "watermark_off_by_one")


# ------------------------------------------------------------------ running


def run_one(mutant: Mutant | None, place: str, seed: int) -> RunResult:
    """Run scenario `place` with `seed`, the core mutated by `mutant` (None: the correct one)."""
    entry = where(place)
    sim = entry.build(seed)
    if mutant is not None:
        cls = build(mutant)
        if mutant.side == "replica":
            use_replica_class(sim, cls)
        else:
            use_client_class(sim, cls)
    return run_scenario(entry, seed, sim)


@dataclass
class Outcome:
    mutant: str
    killed: bool
    place: str | None = None
    seed: int | None = None
    checker: str | None = None
    message: str | None = None
    runs: int = 0
    #: Places that failed for the correct core too (not kills): (place, seed, checkers).
    noisy: list = field(default_factory=list)
    wall_s: float = 0.0

    def as_dict(self) -> dict:
        return dict(vars(self))


def hunt(mutant: Mutant, places: Iterable[str], seeds: Iterable[int]) -> Outcome:
    """Run `mutant` over `places` × `seeds` (each place over all seeds, in order) until a run
    has a violation that the correct core's run of the same place and seed does not have."""
    started = time.perf_counter()
    outcome = Outcome(mutant.name, False)
    seeds = list(seeds)
    seen: set[str] = set()
    for place in places:
        if place in seen:
            continue
        seen.add(place)
        for seed in seeds:
            outcome.runs += 1
            result = run_one(mutant, place, seed)
            if not result.violations:
                continue
            control = run_one(None, place, seed)
            control_checkers = {v.checker for v in control.violations}
            fresh = [v for v in result.violations if v.checker not in control_checkers]
            if not fresh:
                outcome.noisy.append((place, seed, sorted(control_checkers)))
                continue
            first = fresh[0]
            outcome.killed = True
            outcome.place, outcome.seed = place, seed
            outcome.checker, outcome.message = first.checker, first.message
            outcome.wall_s = time.perf_counter() - started
            return outcome
    outcome.wall_s = time.perf_counter() - started
    return outcome


def _hunt_job(job: tuple[str, tuple[str, ...], tuple[int, ...]]) -> dict:
    name, places, seeds = job
    return hunt(MUTANTS_BY_NAME[name], places, seeds).as_dict()


def plan(names: Iterable[str], full: bool) -> list[tuple[str, tuple[str, ...]]]:
    """(mutant, places) for each mutant: its focus, then (full) the whole catalogue."""
    jobs = []
    for name in names:
        mutant = MUTANTS_BY_NAME[name]
        places = list(mutant.focus)
        if full:
            places += [p for p in CATALOGUE if p not in places]
        jobs.append((name, tuple(places)))
    return jobs


def run_all(names: Iterable[str], seeds: Iterable[int], full: bool, jobs: int = 1,
            progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Hunt each named mutant (in parallel over `jobs` processes); outcomes in `names` order."""
    seeds = tuple(seeds)
    work = [(name, places, seeds) for name, places in plan(names, full)]
    for name, _, _ in work:
        build(MUTANTS_BY_NAME[name])  # a patch that no longer applies fails here, at once
    outcomes: list[dict] = []
    if jobs > 1 and len(work) > 1:
        with multiprocessing.Pool(min(jobs, len(work))) as pool:
            for row in pool.imap(_hunt_job, work):
                outcomes.append(row)
                if progress:
                    progress(row)
    else:
        for job in work:
            row = _hunt_job(job)
            outcomes.append(row)
            if progress:
                progress(row)
    return outcomes


def print_table(outcomes: list[dict]) -> None:
    """One row per mutant on stdout (`simulations.tables`: rich on a terminal)."""
    from .tables import Column, show

    show([Column("mutant"), Column("killed"), Column("by (scenario seed: checker)"),
          Column("runs", right=True)],
         [(row["mutant"], "yes" if row["killed"] else "no",
           f"{row['place']} seed {row['seed']}: {row['checker']}" if row["killed"] else "-",
           row["runs"]) for row in outcomes])


def summary(outcomes: list[dict]) -> dict:
    killed = sum(1 for r in outcomes if r["killed"])
    return {"mutants": len(outcomes), "killed": killed,
            "kill_ratio": round(killed / len(outcomes), 3) if outcomes else 0.0,
            "survivors": [r["mutant"] for r in outcomes if not r["killed"]]}


def main(args) -> int:
    """`python -m simulations mutants`: 0 if every mutant was killed, 1 if one survived, 2 for
    bad arguments (an unknown mutant, fewer than one worker)."""
    from .experiment import parse_seeds

    if args.only:
        names = [n for n in args.only.split(",") if n]
        unknown = [n for n in names if n not in MUTANTS_BY_NAME]
        if unknown:
            print(f"unknown mutant(s): {', '.join(unknown)}; known: "
                  f"{', '.join(MUTANTS_BY_NAME)}", file=sys.stderr)
            return 2
    else:
        names = list(FAST if args.fast else MUTANTS_BY_NAME)
    seeds = parse_seeds(args.seeds or ("1-8" if args.fast else "1-5"))
    if args.workers is not None and args.workers < 1:
        print(f"--workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 2

    def progress(row: dict) -> None:
        state = (f"killed by {row['place']} seed {row['seed']} ({row['checker']})"
                 if row["killed"] else "survived")
        print(f"{row['mutant']}: {state} after {row['runs']} runs, {row['wall_s']:.1f} s",
              file=sys.stderr, flush=True)

    outcomes = run_all(names, seeds, full=not args.fast, jobs=args.workers or os.cpu_count() or 1,
                       progress=progress)
    print_table(outcomes)
    result = summary(outcomes)
    print(json.dumps(result))
    return 0 if result["killed"] == result["mutants"] else 1
