"""Trade-finance scripts through the simulator: the ledger of TRADE-DOMAIN.md replicated by real
`pbft.core` replicas, driven by one simulated client per participant, one step at a time.

A script is a list of steps: a participant signs a command (or asks a read) and expects it to be
accepted or refused with a given code; the business time moves forward; a fault strikes; time
passes; several participants act at once. `TradeRun` plays it in a `Simulation`: each step goes
through the actor's own `ClientSession` (its own key, so the ledger's actor is the real signer),
and the next step starts only when f + 1 replicas agreed on the result of the previous one.

Scripts are usually recorded rather than written: `ScriptRecorder` is a `LedgerDriver` (the
direct driver of tradeapp.scenario) that writes down what a direct scenario asks of it, together
with the direct ledger's answers, so that the simulator replays the very same steps and the
outcomes can be compared one by one.

Business time. The simulator's clock starts at 0 (1970) and moves in 10 ms ticks, while the
scenarios span weeks of 2024. `ClockedLedger` wraps the ledger: business time is the agreed
batch timestamp plus an offset that only an ordered `sim.clock` operation from the simulation's
clock client can move forward. The offset is replicated state (in the snapshot and the digest),
so it is agreed exactly like everything else; between two clock steps business time flows with
the batch timestamps, as it does in production.

`check_trade` is the checker for these runs: client-visible results against a sequential replay
of a correct replica's executed log, reads against the replayed states, every step's expected
outcome, equal ledger digests on the correct replicas, and the ledger's invariants.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pbft.app import ExecutionContext
from pbft.crypto import sha256
from pbft.messages import Reply
from tradeapp.commands import (
    Accepted,
    Operation,
    PartyAdmit,
    Result,
    decode_result,
    encode_accepted,
    encode_rejected,
)
from tradeapp.errors import ErrorCode
from tradeapp.invariants import violations as ledger_violations
from tradeapp.machine import TradeLedger
from tradeapp.model import pack_canonical, unpack_strict
from tradeapp.scenario import (
    FX_ADMIN,
    LedgerDriver,
    admit_cast,
    cast_keys,
    cast_ledger,
    placeholder_key,
)

from .byzantine import Behaviour, Send
from .engine import Simulation
from .clients import SessionProxy, SimClient
from .keys import InsecureSigner, ed25519_signer
from .results import Violation

#: The simulated client that moves business time (not a participant of the ledger).
CLOCK_CLIENT = "sim-clock"
_CLOCK_OPERATION = "sim.clock"
_SNAPSHOT_TAG = "clocked-ledger/1"


# ====================================================================== business time


class ClockedLedger:
    """A `StateMachine`: a `TradeLedger` whose business time is the batch timestamp plus an
    agreed offset. An operation signed by `clock_key` is `["sim.clock", business_ms]`: from
    then on business time is at least `business_ms` (the offset only grows, so business time
    never goes back). Everything else goes to the ledger, with the shifted time.

    A malformed clock operation is refused (MALFORMED) and changes nothing. `restore` raises
    ValueError on bytes `snapshot` did not produce, changing nothing.
    """

    def __init__(self, ledger: TradeLedger, clock_key: bytes) -> None:
        self.ledger = ledger
        self._clock_key = clock_key
        self.offset_ms = 0

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        if context.client == self._clock_key:
            return self._set_business_time(operation, context.timestamp_ms)
        shifted = ExecutionContext(
            context.sequence, context.client, context.timestamp_ms + self.offset_ms
        )
        return self.ledger.execute(operation, shifted)

    def admits(self, client: bytes) -> bool:
        """N8': the clock and the ledger's participants (`TradeLedger.admits`)."""
        return client == self._clock_key or self.ledger.admits(client)

    def _set_business_time(self, operation: bytes, timestamp_ms: int) -> bytes:
        try:
            decoded = unpack_strict(operation)
        except ValueError:
            decoded = None
        match decoded:
            case [str() as name, int() as business_ms] if name == _CLOCK_OPERATION:
                self.offset_ms = max(self.offset_ms, business_ms - timestamp_ms)
                return encode_accepted({"business_ms": timestamp_ms + self.offset_ms})
        return encode_rejected(ErrorCode.MALFORMED, "expected [sim.clock, business_ms]")

    def query(self, operation: bytes, client: bytes) -> bytes:
        return self.ledger.query(operation, client)

    def snapshot(self) -> bytes:
        return pack_canonical([_SNAPSHOT_TAG, self.offset_ms, self.ledger.snapshot()])

    def restore(self, snapshot: bytes) -> None:
        match unpack_strict(snapshot):
            case [str() as tag, int() as offset_ms, bytes() as inner] if tag == _SNAPSHOT_TAG:
                self.ledger.restore(inner)
                self.offset_ms = offset_ms
            case _:
                raise ValueError("not a clocked ledger snapshot")

    def digest(self) -> bytes:
        return sha256(pack_canonical([_SNAPSHOT_TAG, self.offset_ms, self.ledger.digest()]))


def clock_operation(business_ms: int) -> bytes:
    """The operation that moves business time to at least `business_ms`."""
    return pack_canonical([_CLOCK_OPERATION, business_ms])


# ====================================================================== scripts


#: `Step.expect` for a command that must be applied (or a read that must be answered).
ACCEPTED = Accepted


@dataclass(frozen=True)
class Step:
    """`actor` signs `command`; the result must be `expect` (ACCEPTED or an ErrorCode; None:
    anything, left to a `Concurrently` check). `check(value)` may inspect an accepted value
    (return False or raise AssertionError to fail). `read`: answered on the read-only path (R1)
    rather than ordered. `claim`: the actor the payload names. `direct`: the result the direct
    ledger gave for the same step, compared with the simulator's (see `comparable`)."""

    actor: str
    command: Operation
    expect: type[Accepted] | ErrorCode | None = ACCEPTED
    check: Callable[[dict], Any] | None = None
    read: bool = False
    claim: str | None = None
    direct: Result | None = None

    def describe(self) -> str:
        kind = "reads" if self.read else "runs"
        return f"{self.actor} {kind} {self.command.NAME}"


@dataclass(frozen=True)
class SetTime:
    """Business time moves forward to (at least) `business_ms`, agreed through consensus."""

    business_ms: int

    def describe(self) -> str:
        return f"business time -> {self.business_ms}"


@dataclass(frozen=True)
class Fault:
    """`action(simulation)` happens at this point of the script (a fault for the liveness
    clock): a crash, a restart, a partition, healing."""

    action: Callable[[Simulation], None]
    description: str = "fault"

    def describe(self) -> str:
        return self.description


@dataclass(frozen=True)
class Pause:
    """Nothing is submitted for `ms` of virtual time."""

    ms: float

    def describe(self) -> str:
        return f"pause {self.ms} ms"


@dataclass(frozen=True)
class Concurrently:
    """Several participants submit at the same moment; `check(results)` judges the results
    together (in the order of `steps`) and returns what is wrong, or None."""

    steps: tuple[Step, ...]
    check: Callable[[list[Result]], str | None]
    description: str = "concurrent steps"

    def describe(self) -> str:
        return self.description


ScriptStep = Step | SetTime | Fault | Pause | Concurrently


def outcome_of(result: Result) -> type[Accepted] | ErrorCode:
    return ACCEPTED if isinstance(result, Accepted) else result.code


#: Fields whose values legitimately differ between a direct run and a simulated one: consensus
#: sequence numbers, agreed times (every "*_ms" field: the simulator's time flows on between
#: clock steps), audit positions, the ids the ledger derives from them and the hashes that cover
#: them, and keys (placeholders in the direct run).
VOLATILE_FIELDS = frozenset({
    "sequence", "index", "next", "length", "enc_id", "alert_id", "hash", "prev_hash",
    "public_key", "signer", "operation_digest",
})  # fmt: skip
_READS = ("get.", "report.")


def comparable(value: Any) -> Any:
    """`value` without its VOLATILE_FIELDS (recursively), and audit views ("events") without
    the events of reads: the simulator orders a read when the replicas' answers disagree (R1),
    which audits it, where the direct run answered it unaudited. For comparing a direct result
    with the simulator's."""
    if isinstance(value, dict):
        return {
            k: _without_reads(v) if k == "events" else comparable(v)
            for k, v in value.items()
            if k not in VOLATILE_FIELDS and not k.endswith("_ms")
        }
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def _without_reads(events: Any) -> Any:
    if not isinstance(events, list):
        return comparable(events)
    return [
        comparable(event) for event in events
        if not (isinstance(event, dict) and str(event.get("command", "")).startswith(_READS))
    ]


class ScriptRecorder(LedgerDriver):
    """A `LedgerDriver` that also records what it is asked, as a script for `TradeRun`: each
    command or read with the direct ledger's result as its expectation, and each change of
    `now_ms` as a `SetTime`. Only `run`, `ok`, `refused` and `read` are recorded: calling
    `run_raw` or `run_in_batch` directly raises RuntimeError (a script holds typed
    commands, one per batch)."""

    def __init__(self, ledger: Any, keys: Mapping[str, bytes], now_ms: int) -> None:
        self.script: list[ScriptStep] = []
        self._now_ms: int | None = None
        self._in_run = False
        super().__init__(ledger, keys, now_ms)

    @property
    def now_ms(self) -> int:
        assert self._now_ms is not None
        return self._now_ms

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        if value != self._now_ms:
            self.script.append(SetTime(value))
        self._now_ms = value

    def run(self, actor: str, op: Operation, *, claim: str | None = None) -> Result:
        self._in_run = True
        try:
            result = super().run(actor, op, claim=claim)
        finally:
            self._in_run = False
        self.script.append(Step(actor, op, outcome_of(result), claim=claim, direct=result))
        return result

    def run_in_batch(self, actor: str, operation: bytes) -> Result:
        if not self._in_run:
            raise RuntimeError(
                "a script records typed commands (run, ok, refused, read), one per batch: "
                "raw operations cannot be replayed through it"
            )
        return super().run_in_batch(actor, operation)

    def read(self, reader: str, op: Operation) -> Result:
        result = super().read(reader, op)
        self.script.append(Step(reader, op, outcome_of(result), read=True, direct=result))
        return result


def cast_recorder(now_ms: int, *, check_invariants: bool = False) -> ScriptRecorder:
    """`tradeapp.scenario.cast_driver`, recording: a fresh direct ledger after the common
    setup (recorded too), at `now_ms`."""
    recorder = ScriptRecorder(cast_ledger(check_invariants=check_invariants), cast_keys(), now_ms)
    admit_cast(recorder)
    return recorder


# ====================================================================== the simulation


def signer_factory(insecure_signatures: bool = True) -> Callable[[str], Any]:
    """The engine's `make_signer` for this setting, usable before the Simulation exists (the
    ledger's founders must be known when the replicas' applications are built)."""
    return InsecureSigner if insecure_signatures else ed25519_signer


def trade_simulation(*, seed: int, insecure_signatures: bool = True,
                     check_invariants: bool = False, **options: Any) -> Simulation:
    """A `Simulation` of four replicas of the ledger (a `ClockedLedger` each), founded by the
    scenarios' FX_ADMIN with its simulated client key, and no load clients. `options` go to
    `Simulation` (network, behaviours, config_overrides, ...)."""
    make_signer = signer_factory(insecure_signatures)
    founders = {FX_ADMIN: make_signer(FX_ADMIN).public_key}
    clock_key = make_signer(CLOCK_CLIENT).public_key

    def app() -> ClockedLedger:
        return ClockedLedger(TradeLedger(founders, check_invariants=check_invariants), clock_key)

    sim = Simulation(seed=seed, clients=0, app_factory=app,
                     insecure_signatures=insecure_signatures, **options)
    assert sim.make_signer(FX_ADMIN).public_key == founders[FX_ADMIN], "engine keys changed"
    return sim


@dataclass
class Outcome:
    """What one submitted step got: the result f + 1 (or, read-only, 2f + 1) replicas agreed
    on, when, and the request's identity (client key, timestamp) in the executed log."""

    position: int
    step: Step | SetTime
    client: bytes
    operation: bytes
    read: bool
    invoked_us: int
    completed_us: int | None = None
    timestamp: int | None = None
    #: False if a read was ordered after all (R1: the replicas' answers disagreed).
    answered_read_only: bool = False
    result_bytes: bytes | None = None
    result: Result | None = None


class _ScriptedSession(SessionProxy):
    """A `ClientSession` as the engine sees it (the engine is not changed: `SimClient.session`
    is swapped for this): it submits what the script gives it at its next tick, and hands each
    accepted result to the script."""

    def __init__(self, run: TradeRun, client: SimClient) -> None:
        super().__init__(client.session)
        self._run = run
        self._client = client
        self.queued: Outcome | None = None

    def tick(self, now_ms: int) -> None:
        self._session.tick(now_ms)
        outcome = self.queued
        if outcome is None or self._session.outstanding is not None:
            return
        self.queued = None
        now_us = self._run.sim.now_us
        outcome.invoked_us = now_us
        request = self._session.submit(outcome.operation, read_only=outcome.read)
        outcome.timestamp = request.timestamp
        client = self._client
        client.record.operations.append((outcome.operation, now_us, None, None))
        client.remaining = 0
        client.done = False

    def ready(self) -> Any:
        ready = self._session.ready()
        for result in ready.results:
            self._run._on_result(self.client, result)
        return ready


class TradeRun:
    """Plays `script` in `sim`, one step after the other, each participant through its own
    simulated client; starts at once (or at `start_ms`). Owns the clients it adds to `sim`.

    Check it after `sim.run()` with `check_trade(sim)` (which finds this run) or read
    `outcomes` and `problems()`. A step that never completes leaves the script unfinished and
    its client waiting, which the liveness checker reports.
    """

    def __init__(self, sim: Simulation, script: Iterable[ScriptStep], *,
                 start_ms: float = 0) -> None:
        if sim in _RUNS:
            raise ValueError("this simulation already plays a trade script")
        _RUNS[sim] = self
        self.sim = sim
        self.script = list(script)
        self.outcomes: list[Outcome] = []
        self.group_problems: list[tuple[int, str]] = []
        self.position = 0
        self.finished = False
        self._waiting: dict[bytes, Outcome] = {}
        self._sessions: dict[str, _ScriptedSession] = {}
        for name in sorted(self._actors()):
            client = sim.add_client(name, 0, 0.0, _never)
            session = _ScriptedSession(self, client)
            client.session = session
            self._sessions[name] = session
        sim.at(start_ms, lambda s: self._advance(), fault=False)

    @classmethod
    def of(cls, sim: Simulation) -> TradeRun | None:
        """The run playing in `sim`, if any."""
        return _RUNS.get(sim)

    def key(self, name: str) -> bytes:
        """The public key participant `name` signs with in this simulation (its client's, if
        it acts in the script)."""
        return self.sim.make_signer(name).public_key

    def _actors(self) -> set[str]:
        actors = {CLOCK_CLIENT}
        for step in self.script:
            if isinstance(step, Step):
                actors.add(step.actor)
            elif isinstance(step, Concurrently):
                actors.update(s.actor for s in step.steps)
        return actors

    # ------------------------------------------------------------------ playing

    def _advance(self) -> None:
        while self.position < len(self.script):
            step = self.script[self.position]
            if isinstance(step, Fault):
                # At once, so that it precedes the next submission even within one µs; and
                # marked as a fault at this time, for the liveness clock.
                step.action(self.sim)
                self.sim.at(self.sim.now_us / 1000, lambda s: None)
            elif isinstance(step, Pause):
                self.position += 1
                self.sim.at(self.sim.now_us / 1000 + step.ms, lambda s: self._advance(),
                            fault=False)
                return
            elif isinstance(step, Concurrently):
                for member in step.steps:
                    self._queue(member)
                return
            else:
                self._queue(step)
                return
            self.position += 1
        self.finished = True
        # Replicas get the engine's settling time after the last step, to catch up.
        self.sim.at(self.sim.now_us / 1000, lambda s: None, fault=False)

    def _queue(self, step: Step | SetTime) -> None:
        if isinstance(step, SetTime):
            actor, operation, read = CLOCK_CLIENT, clock_operation(step.business_ms), False
        else:
            actor, read = step.actor, step.read
            operation = self._rekeyed(step.command).encode(step.claim)
        session = self._sessions[actor]
        if session.queued is not None or session.client in self._waiting:
            raise ValueError(f"step {self.position}: {actor} already has a step in flight")
        outcome = Outcome(self.position, step, session.client, operation, read, self.sim.now_us)
        session.queued = outcome
        self._waiting[session.client] = outcome

    def _rekeyed(self, command: Operation) -> Operation:
        """Scripts admit participants with their placeholder keys (as the direct scenarios
        do); here each participant signs with its simulated client's key instead."""
        if isinstance(command, PartyAdmit) and command.public_key == placeholder_key(
            command.participant_id
        ):
            return replace(command, public_key=self.key(command.participant_id))
        return command

    def _on_result(self, client: bytes, result: Any) -> None:
        outcome = self._waiting.pop(client)
        # A read the replicas disagreed on was sent again, ordered, with a new timestamp (R1).
        outcome.timestamp = result.timestamp
        outcome.completed_us = self.sim.now_us
        outcome.answered_read_only = result.read_only
        outcome.result_bytes = result.result
        try:
            outcome.result = decode_result(result.result)
        except ValueError:
            outcome.result = None
        self.outcomes.append(outcome)
        if self._waiting:
            return
        step = self.script[self.position]
        if isinstance(step, Concurrently):
            # In the order of `steps`, not of completion.
            group = [o for o in self.outcomes if o.position == self.position]
            order = {id(member): i for i, member in enumerate(step.steps)}
            results = [o.result for o in sorted(group, key=lambda o: order[id(o.step)])]
            problem = step.check(results)
            if problem is not None:
                self.group_problems.append((self.position, problem))
        self.position += 1
        self._advance()

    # ------------------------------------------------------------------ results

    def step_outcomes(self) -> list[tuple[int, type[Accepted] | ErrorCode | None]]:
        """(position, ACCEPTED or the refusal code) of every completed `Step` at the top of
        the script, in script order; None for a result that is not a ledger result."""
        return sorted(
            (o.position, None if o.result is None else outcome_of(o.result))
            for o in self.outcomes
            if isinstance(o.step, Step) and not isinstance(self.script[o.position], Concurrently)
        )

    def problems(self) -> list[str]:
        """Every way the run differs from its script: a step refused or accepted against its
        expectation, a code other than expected, a failed value check, a value that differs
        from the direct run's, a `Concurrently` check, or a script left unfinished."""
        found = []
        for outcome in self.outcomes:
            step = outcome.step
            if isinstance(step, SetTime):
                if not isinstance(outcome.result, Accepted):
                    found.append(f"step {outcome.position}: the clock was refused: {outcome.result}")
                continue
            problem = _step_problem(step, outcome.result)
            if problem is not None:
                found.append(f"step {outcome.position} ({step.describe()}): {problem}")
        found.extend(f"step {position}: {problem}" for position, problem in self.group_problems)
        if not self.finished:
            step = self.script[self.position]
            found.append(f"the script stopped at step {self.position} ({step.describe()})")
        return found


#: The run playing in each simulation (for `check_trade`, which gets only the simulation).
_RUNS: weakref.WeakKeyDictionary[Simulation, TradeRun] = weakref.WeakKeyDictionary()


def _never(client: int, index: int) -> bytes:
    raise AssertionError("scripted clients submit through the script only")


def _step_problem(step: Step, result: Result | None) -> str | None:
    if result is None:
        return "the agreed result is not a ledger result"
    if step.expect is not None and outcome_of(result) != step.expect:
        expected = "accepted" if step.expect is ACCEPTED else step.expect
        return f"expected {expected}, got {result}"
    if step.check is not None and isinstance(result, Accepted):
        try:
            if step.check(result.value) is False:
                return f"value check failed on {result.value!r:.300}"
        except AssertionError as error:
            return f"value check failed: {error}"
    direct = step.direct
    if (isinstance(direct, Accepted) and isinstance(result, Accepted)
            and comparable(direct.value) != comparable(result.value)):
        return f"value {result.value!r:.300} differs from the direct run's {direct.value!r:.300}"
    return None


# ====================================================================== a lying replica


class LyingReplies(Behaviour):
    """Answers clients with the opposite of the truth: an accepted command comes back refused
    (UNAUTHORIZED), a refusal comes back accepted, on the ordered and the read-only path. It
    takes part in consensus honestly: only f + 1 matching replies (2f + 1 for reads) protect
    the client."""

    description = "lies in every reply to clients"

    def __init__(self) -> None:
        self.lies = 0

    def outgoing(self, to: tuple, message: Any) -> Send:
        if isinstance(message, Reply):
            self.lies += 1
            message = replace(message, result=_opposite(message.result))
        return [(to, message)]


def _opposite(result: bytes) -> bytes:
    try:
        truth = decode_result(result)
    except ValueError:
        return encode_accepted({})
    if isinstance(truth, Accepted):
        return encode_rejected(ErrorCode.UNAUTHORIZED, "a lie")
    return encode_accepted({"lie": True})


# ====================================================================== checking


def ledger_of(sim: Simulation, replica: int) -> TradeLedger:
    """The TradeLedger inside replica `replica`'s application."""
    app = sim.apps[replica]
    assert isinstance(app, ClockedLedger), type(app)
    return app.ledger


def _complete_log(sim: Simulation) -> tuple[int, list] | None:
    """A correct replica whose executed log runs without a gap from sequence 1 (the longest
    such), and that log; None if every correct replica skipped part of it by state transfer."""
    best = None
    for replica in _up_correct(sim):
        batches = sim.executed[replica]
        if any(batch.sequence != i + 1 for i, batch in enumerate(batches)):
            continue
        if best is None or len(batches) > len(best[1]):
            best = (replica, batches)
    return best


def check_trade(sim: Simulation) -> list[Violation]:
    """The checker for trade runs (a `Scenario.linearizability` hook):

    - linearizability: every ordered result a client accepted equals the result of replaying
      a correct replica's executed log on a fresh ledger (and the replica's own results equal
      the replay's); an operation that finished before another began is ordered before it;
      every read answered on the read-only path equals the answer of a replayed state between
      its invocation and its completion;
    - trade_script: every step got its expected outcome (`TradeRun.problems`);
    - trade_digest: the correct replicas that are up ended at one sequence number with one
      ledger digest;
    - trade_invariants: the ledger's invariants (tradeapp.invariants) hold on each of them.

    The replayed log is that of the correct replica with the longest log executed without a
    gap (a replica that skipped part of it by state transfer cannot be replayed from genesis).
    """
    run = TradeRun.of(sim)
    violations: list[Violation] = []
    if run is not None:
        violations.extend(Violation("trade_script", problem) for problem in run.problems())
    found = _complete_log(sim)
    if found is None:
        return violations + [Violation("linearizability", "no correct replica holds the whole log")]
    replica, batches = found
    requests = [(batch, executed) for batch in batches for executed in batch.requests]
    position_of = {
        (executed.request.client, executed.request.timestamp): position
        for position, (_, executed) in enumerate(requests)
    }
    outcomes = run.outcomes if run is not None else []
    ordered = [o for o in outcomes if not o.answered_read_only]
    reads = _read_windows(outcomes, ordered, position_of, len(requests))
    replay = sim.app_factory()
    assert isinstance(replay, ClockedLedger)
    results: dict[tuple[bytes, int], bytes] = {}
    for done in range(len(requests) + 1):
        # `done` requests executed: answer the reads whose window holds this state.
        for window in reads:
            if window.matched or not window.low <= done <= window.high:
                continue
            read = window.outcome
            window.matched = replay.query(read.operation, read.client) == read.result_bytes
        if done == len(requests):
            break
        batch, executed = requests[done]
        request = executed.request
        context = ExecutionContext(batch.sequence, request.client, batch.timestamp_ms)
        result = replay.execute(request.operation, context)
        results[(request.client, request.timestamp)] = result
        if result != executed.result:
            violations.append(Violation(
                "linearizability", "the replica's result differs from a sequential replay",
                batch.sequence, (replica,)))
    violations.extend(
        Violation("linearizability", f"step {w.outcome.position}: no state between its "
                                     f"invocation and completion gives the read's answer")
        for w in reads if not w.matched
    )
    violations.extend(_check_ordered(ordered, results, position_of, replica))
    violations.extend(_check_digests(sim))
    for up in _up_correct(sim):
        ledger = ledger_of(sim, up)
        violations.extend(Violation("trade_invariants", problem, replicas=(up,))
                          for problem in ledger_violations(ledger.state, ledger.audit))
    return violations


def _up_correct(sim: Simulation) -> list[int]:
    return [r for r in sim.correct_replicas() if r not in sim.down]


def _check_ordered(ordered: list[Outcome], results: dict, position_of: dict,
                   replica: int) -> list[Violation]:
    violations = []
    for outcome in ordered:
        key = (outcome.client, outcome.timestamp)
        if key not in results:
            violations.append(Violation(
                "linearizability", f"step {outcome.position}: its result was accepted but replica "
                                   f"{replica} never executed it", replicas=(replica,)))
        elif results[key] != outcome.result_bytes:
            violations.append(Violation(
                "linearizability", f"step {outcome.position}: the accepted result differs from "
                                   "the sequential replay", replicas=(replica,)))
    for a in ordered:
        for b in ordered:
            ka, kb = (a.client, a.timestamp), (b.client, b.timestamp)
            if (a.completed_us is not None and a.completed_us < b.invoked_us
                    and ka in position_of and kb in position_of
                    and position_of[ka] > position_of[kb]):
                violations.append(Violation(
                    "linearizability", f"step {a.position} finished before step {b.position} "
                                       "began but is ordered after it"))
    return violations


@dataclass
class _ReadWindow:
    """A read answered on the read-only path must equal the state after `low`..`high`
    executed requests: all those that finished before it began, none that began after it
    finished."""

    outcome: Outcome
    low: int
    high: int
    matched: bool = False


def _read_windows(outcomes: list[Outcome], ordered: list[Outcome],
                  position_of: dict, executed: int) -> list[_ReadWindow]:
    windows = []
    for read in outcomes:
        if not read.answered_read_only or read.completed_us is None:
            continue
        low, high = 0, executed
        for other in ordered:
            position = position_of.get((other.client, other.timestamp))
            if position is None:
                continue
            if other.completed_us is not None and other.completed_us < read.invoked_us:
                low = max(low, position + 1)
            if other.invoked_us > read.completed_us:
                high = min(high, position)
        windows.append(_ReadWindow(read, low, high))
    return windows


def _check_digests(sim: Simulation) -> list[Violation]:
    """The correct replicas that are up end at one sequence number with one ledger digest."""
    up = _up_correct(sim)
    executed = {r: sim.replicas[r].last_executed for r in up}
    if len(set(executed.values())) > 1:
        return [Violation("trade_digest", f"correct replicas ended at different sequence "
                                          f"numbers: {executed}", replicas=tuple(up))]
    digests = {r: ledger_of(sim, r).digest() for r in up}
    if len(set(digests.values())) > 1:
        return [Violation("trade_digest", "correct replicas ended with different ledger digests",
                          replicas=tuple(up))]
    return []
