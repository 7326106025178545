"""Readable transcripts of a few key runs, one line per delivered message or event, in the
spirit of etcd-raft's datadriven tests: what the protocol does, step by step, for a newcomer
to read, and checked into the repository (tests/transcripts/NAME.txt) so that a change in
behaviour shows up as a diff.

    python -m simulations transcript                  # the names
    python -m simulations transcript NAME             # print one
    python -m simulations transcript NAME --write     # rewrite its file (also: all)

A `Transcript` is an `engine.Observer`: it watches a `Simulation` without changing it, so the
transcript of a run is that run, and the same seed gives the same text. Each run here is small
(n = 4, one or two clients, two or three requests) on a network where every message takes the
same time, so the steps of a phase line up.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from pbft.core import ClientResult, Replica
from pbft.core.mode import Mode
from pbft.messages import (
    NULL_DIGEST,
    Checkpoint,
    Commit,
    FetchLog,
    FetchState,
    LoggedBatch,
    NewView,
    Prepare,
    PrePrepare,
    Reply,
    Request,
    StateChunk,
    ViewChange,
)

from . import checkers
from .byzantine import EquivocatingPrimary
from .engine import Observer, Simulation
from .clients import SimClient
from .network import NetworkProfile

#: Where the checked-in transcripts live (tests/test_transcripts.py compares with them).
TRANSCRIPT_DIR = Path(__file__).resolve().parent.parent / "tests" / "transcripts"
#: Hex digits of a digest shown: enough to tell the batches of a short run apart.
DIGEST_HEX = 6
#: Longest rendering of an operation or a result before it is cut with "...".
VALUE_CHARS_MAX = 40


def short_digest(digest: bytes) -> str:
    """The first `DIGEST_HEX` hex digits of a digest; "null" for the null request's."""
    return "null" if digest == NULL_DIGEST else digest.hex()[:DIGEST_HEX]


def render_value(data: bytes) -> str:
    """An operation or a result for people: a msgpack array as its items (`append key-0
    "0.1;"`), anything else as a Python bytes literal; cut to `VALUE_CHARS_MAX`."""
    try:
        value = msgpack.unpackb(data, raw=False)
    except Exception:  # noqa: BLE001 - not msgpack (or not UTF-8): shown as bytes
        value = data
    if isinstance(value, list):
        text = " ".join(_render_item(item) for item in value)
    else:
        text = _render_item(value)
    return text if len(text) <= VALUE_CHARS_MAX else text[:VALUE_CHARS_MAX - 3] + "..."


def _render_item(item: Any) -> str:
    if isinstance(item, bytes):
        try:
            return '"' + item.decode("ascii") + '"' if item.isascii() else repr(item)
        except UnicodeDecodeError:  # pragma: no cover - isascii() guards it
            return repr(item)
    if isinstance(item, list):
        return "[" + " ".join(_render_item(i) for i in item) + "]"
    return "nil" if item is None else str(item)


#: Short names of the replica's timer handlers (`Replica._timers`); another handler is named
#: after its method.
_TIMER_NAMES = {
    "_on_request_timeout": "request", "_on_proposal_timeout": "proposal",
    "_on_view_change_timeout": "view-change", "_on_view_change_resend": "view-change resend",
    "_on_lagging_timeout": "lagging", "_on_fetch_timer": "state-fetch",
    "_on_batch_timeout": "batch", "_on_catch_up_timer": "catch-up",
}


def _timer_name(handler: Callable) -> str:
    name = handler.__name__
    return _TIMER_NAMES.get(name, name.removeprefix("_on_").replace("_", " "))


@dataclass
class _ReplicaView:
    """What the transcript last saw of one replica, to report what changed."""

    replica: Replica
    view: int
    mode: Mode
    fetching: bool
    stable: int
    #: The stable checkpoint it knows of beyond its state, while it waits before fetching it.
    lagging: int | None


class Transcript(Observer):
    """Renders a simulation as text while it runs: attach with `Transcript(sim)`, run the
    simulation, then `finish()` and `text()`.

    Lines: `time  source → destination  MESSAGE fields` for each delivery (with `(again)` for a
    copy delivered before, `✗ reason` when the receiver dropped it, `✗ down` when it was
    crashed); `time  rN  * event` for what a replica did (executions, timers that fired and
    made it act, view changes, state transfers, stable checkpoints) and for a client's
    accepted result; `-- comment` lines at the key moments, and the scenario's own `note`s.

    It replaces any observer `simulation` had, and keeps every delivered message (to mark
    copies): meant for short runs."""

    def __init__(self, simulation: Simulation) -> None:
        self.sim = simulation
        self.lines: list[str] = []
        self._names = {client.session.client: _client_name(client) for client in simulation.clients}
        self._seen: set[tuple[Any, Any, Any]] = set()
        #: The last delivery's line, completed once the receiver has handled it.
        self._pending: tuple[str, int | None, Counter | None] | None = None
        self._replicas = [self._view_of(r) for r in simulation.replicas]
        #: (replica, timer names) whose tick is being handled.
        self._ticked: tuple[int, list[str]] | None = None
        self._views_begun: set[int] = {0}
        self._views_installed: set[int] = {0}
        self._committed: set[int] = set()
        self._stable: set[int] = {0}
        simulation.observer = self

    # ------------------------------------------------------------------ Observer

    def delivering(self, source: Any, destination: Any, message: Any) -> None:
        self._settle()
        again = (source, destination, message) in self._seen
        self._seen.add((source, destination, message))
        text = f"{self._stamp()}  {self._node(source):>3} → {self._node(destination):<3}  "
        text += self.describe(message, source)
        if again:
            text += "  (again)"
        if type(destination) is int and destination in self.sim.down:
            self._emit(text + "  ✗ down")
            return
        dropped = None
        if type(destination) is int and destination not in self.sim.behaviours:
            dropped = Counter(self.sim.replicas[destination].dropped)
        self._pending = (text, destination if type(destination) is int else None, dropped)

    def ticking(self, replica_id: int, now_ms: int) -> None:
        self._settle()
        replica = self.sim.replicas[replica_id]
        # (The core's timer table is private: a renamed one shows as missing lines in a diff.)
        due = [_timer_name(handler) for timer, handler in getattr(replica, "_timers", ())
               if timer.deadline_ms is not None and now_ms >= timer.deadline_ms]
        self._ticked = (replica_id, due) if due else None

    def readied(self, replica_id: int, ready: Any) -> None:
        if self._ticked is not None and self._ticked[0] == replica_id:
            self._event(replica_id, f"* timers due: {', '.join(self._ticked[1])}")
        self._ticked = None
        self._settle()
        for batch in ready.executed:
            if batch.sequence not in self._committed:
                self._committed.add(batch.sequence)
                self.lines.append(f"-- n{batch.sequence} committed in view {batch.view}: "
                                  f"{self._who(replica_id)} is the first to execute it")
            requests = ", ".join(
                f"{self._node(e.request.client)} t={e.request.timestamp} → "
                f"{render_value(e.result)}" for e in batch.requests
            ) or "no new request (N8: already executed)"
            self._event(replica_id, f"* executes n{batch.sequence} (v{batch.view} "
                                    f"d={short_digest(batch.digest)}): {requests}")

    def client_result(self, client: SimClient, result: ClientResult) -> None:
        self._settle()
        via = " (read-only)" if result.read_only else ""
        self._event(client.session.client, f"* accepts t={result.timestamp}{via}: "
                                           f"{render_value(result.result)}")

    # ------------------------------------------------------------------ the scenario's part

    def note(self, text: str) -> None:
        """A comment line at the current virtual time (a fault the scenario injects)."""
        self._settle()
        self.lines.append(f"-- {self._stamp().strip()} ms: {text}")

    def finish(self) -> None:
        """Complete the last line and report the last changes; call once the run is over."""
        self._settle()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    # ------------------------------------------------------------------ rendering

    def describe(self, message: Any, source: Any = None) -> str:
        """One message with its key fields; the sender is named when it is not `source`."""
        kind = type(message)
        if kind is Request:
            text = (f"REQUEST {self._node(message.client)} t={message.timestamp}"
                    f"{' read-only' if message.read_only else ''} {render_value(message.operation)}")
        elif kind is PrePrepare:
            text = (f"PRE-PREPARE v{message.view} n{message.sequence} "
                    f"d={short_digest(message.digest)}")
            if message.requests:
                text += " [" + ", ".join(f"{self._node(r.client)} t={r.timestamp}"
                                         for r in message.requests) + "]"
        elif kind in (Prepare, Commit):
            text = (f"{kind.__name__.upper()} v{message.view} n{message.sequence} "
                    f"d={short_digest(message.digest)}")
        elif kind is Reply:
            text = (f"REPLY v{message.view} t={message.timestamp}"
                    f"{' read-only' if message.read_only else ''} {render_value(message.result)}")
        elif kind is Checkpoint:
            text = f"CHECKPOINT n{message.sequence} d={short_digest(message.digest)}"
        elif kind is ViewChange:
            prepared = ", ".join(f"n{c.pre_prepare.sequence} d={short_digest(c.pre_prepare.digest)}"
                                 for c in message.prepared)
            text = (f"VIEW-CHANGE v{message.new_view} stable=n{message.stable_sequence} "
                    f"P=[{prepared}]")
        elif kind is NewView:
            senders = ",".join(f"r{vc.replica}" for vc in message.view_changes)
            o_set = ", ".join(f"n{p.sequence} d={short_digest(p.digest)}"
                              for p in message.pre_prepares)
            text = f"NEW-VIEW v{message.view} V=[{senders}] O=[{o_set}]"
        elif kind is FetchState:
            text = f"FETCH-STATE n{message.sequence} chunk {message.chunk}"
        elif kind is StateChunk:
            text = (f"STATE-CHUNK n{message.sequence} chunk {message.chunk} "
                    f"({len(message.data)} of {message.snapshot_bytes} bytes)")
        elif kind is FetchLog:
            text = (f"FETCH-LOG from n{message.sequence}" if message.digest == NULL_DIGEST
                    else f"FETCH-LOG n{message.sequence} d={short_digest(message.digest)}")
        elif kind is LoggedBatch:
            pre_prepare = message.pre_prepare
            text = (f"LOGGED-BATCH v{pre_prepare.view} n{pre_prepare.sequence} "
                    f"d={short_digest(pre_prepare.digest)} with {len(message.commits)} COMMITs")
        else:
            text = kind.__name__
        sender = getattr(message, "replica", None)
        if kind is not Reply and type(sender) is int and type(source) is int and sender != source:
            text += f" (signed as r{sender})"
        return text

    def _node(self, node: Any) -> str:
        if type(node) is int:
            return f"r{node}"
        return self._names.get(node, "c?")

    def _who(self, replica_id: int) -> str:
        """A replica's name in a comment, saying whether it is Byzantine."""
        return f"r{replica_id}" + (" (Byzantine)" if replica_id in self.sim.behaviours else "")

    def _stamp(self) -> str:
        return f"{self.sim.now_us / 1000:9.3f}"

    def _emit(self, line: str) -> None:
        self.lines.append(line)

    def _event(self, node: Any, text: str) -> None:
        self._emit(f"{self._stamp()}  {self._node(node):>3}{'':6}{text}")

    # ------------------------------------------------------------------ what changed

    @staticmethod
    def _view_of(replica: Replica) -> _ReplicaView:
        lagging = getattr(replica, "_lagging", None)
        return _ReplicaView(replica, replica.view, replica.mode, replica.fetching_state,
                            replica.stable_checkpoint,
                            None if lagging is None else lagging.sequence)

    def _settle(self) -> None:
        """Complete the pending delivery line (did its receiver drop it?), then report what
        changed at each replica since the last look."""
        if self._pending is not None:
            text, destination, dropped = self._pending
            self._pending = None
            if destination is not None and dropped is not None:
                now = self.sim.replicas[destination].dropped
                reasons = sorted(r for r, count in now.items() if count > dropped.get(r, 0))
                if reasons:
                    text += "  ✗ " + ", ".join(reasons)
            self._emit(text)
        for replica_id, replica in enumerate(self.sim.replicas):
            self._report_changes(replica_id, replica)

    def _report_changes(self, replica_id: int, replica: Replica) -> None:
        seen = self._replicas[replica_id]
        now = self._view_of(replica)
        self._replicas[replica_id] = now
        if replica is not seen.replica:
            self._event(replica_id, f"* restarts from its records: view {now.view}, "
                                    f"stable checkpoint n{now.stable}, "
                                    f"last executed n{replica.last_executed}")
            return
        if now.mode is Mode.VIEW_CHANGE and (seen.mode is not Mode.VIEW_CHANGE
                                             or now.view != seen.view):
            if now.view not in self._views_begun:
                self._views_begun.add(now.view)
                self.lines.append(f"-- view change: {self._who(replica_id)} is the first to ask "
                                  f"for view "
                                  f"{now.view} (whose primary is r{replica.primary})")
            self._event(replica_id, f"* starts a view change to v{now.view}")
        if seen.mode is Mode.VIEW_CHANGE and now.mode is not Mode.VIEW_CHANGE:
            if now.view not in self._views_installed:
                self._views_installed.add(now.view)
                self.lines.append(f"-- view {now.view} installed: r{replica.primary} is the "
                                  f"primary")
            self._event(replica_id, f"* enters view v{now.view}")
        if now.lagging is not None and now.lagging != seen.lagging:
            self._event(replica_id, f"* learns that n{now.lagging} is stable, beyond its last "
                                    f"executed n{replica.last_executed}: waits "
                                    f"{replica.config.state_transfer_timeout_ms} ms for batches "
                                    f"in flight before fetching its state")
        if now.fetching and not seen.fetching:
            # The fetched checkpoint becomes its stable checkpoint as the fetch starts.
            self.lines.append(f"-- state transfer: r{replica_id} fetches the state at its new "
                              f"stable checkpoint n{now.stable} in chunks")
            self._event(replica_id, f"* starts a state transfer to n{now.stable}")
        if seen.fetching and not now.fetching:
            record = replica.last_state_transfer
            if record is not None:
                chunks = "1 chunk" if record.chunks == 1 else f"{record.chunks} chunks"
                self._event(replica_id, f"* state transfer done: n{record.sequence}, "
                                        f"{record.snapshot_bytes} bytes in {chunks}")
            self.lines.append(f"-- r{replica_id} restored the state at n{now.stable}; it goes "
                              f"on with the batches after it (those it holds, then the log's)")
        if now.stable > seen.stable:
            if now.stable not in self._stable:
                self._stable.add(now.stable)
                self.lines.append(f"-- checkpoint n{now.stable} stable: {self._who(replica_id)} "
                                  f"is the first to hold 2f + 1 matching CHECKPOINTs")
            self._event(replica_id, f"* checkpoint n{now.stable} is stable (2f + 1 CHECKPOINTs):"
                                    f" log below it discarded")


def _client_name(client: SimClient) -> str:
    name = client.record.name
    return "c" + name.removeprefix("client-") if name.startswith("client-") else name


# ------------------------------------------------------------------ the scenarios

#: The network of every transcript: each message takes exactly this long, so the phases of the
#: protocol line up (and the generator's draws do not change the order).
LATENCY_MS = 1.0
#: A client's think time: next to nothing, so that a client sends its next request as it
#: accepts a result, and the times in a transcript hardly depend on the generator's draws.
THINK_MS = 0.001


@dataclass(frozen=True)
class TranscriptScenario:
    name: str
    #: What it shows, in a few words (the list of transcripts, the header's first line).
    title: str
    #: What it shows, a few lines for its header.
    summary: str
    #: seed -> the simulation, with its faults scheduled (each noted by `_at`).
    build: Callable[[int], Simulation]
    seed: int = 1
    until_ms: float = 20_000


SCENARIOS: dict[str, TranscriptScenario] = {}


def _register(name: str, title: str, summary: str, **options: Any) -> Callable:
    def register(build: Callable) -> Callable:
        SCENARIOS[name] = TranscriptScenario(name, title, summary, build, **options)
        return build
    return register


def _simulation(seed: int, *, clients: int = 1, requests: int = 2, **options: Any) -> Simulation:
    from pbft.app import kv_append

    return Simulation(
        seed=seed, replicas=4, clients=clients, requests_per_client=requests,
        think_ms=THINK_MS,
        network=NetworkProfile(LATENCY_MS, LATENCY_MS),
        make_operation=lambda c, i: kv_append(f"key-{c}", b"%d.%d;" % (c, i)), **options,
    )


def _at(sim: Simulation, ms: float, note: str, action: Callable[[Simulation], Any],
        fault: bool = True) -> None:
    """Schedule `action` at `ms` (a fault, unless `fault` is False), noted on the transcript
    watching `sim` (if one does)."""

    def act(s: Simulation) -> None:
        if isinstance(s.observer, Transcript):
            s.observer.note(note)
        action(s)

    sim.at(ms, act, fault=fault)


@_register("normal_case", "two requests ordered and executed, no fault", """\
The normal case (N1-N7): one client sends two requests to every replica; the primary r0 puts
each in a PRE-PREPARE, the backups PREPARE it, every replica COMMITs once it holds 2f = 2
matching PREPAREs with the PRE-PREPARE, and executes on 2f + 1 = 3 matching COMMITs; the client
accepts a result on f + 1 = 2 matching REPLYs.""")
def _normal_case(seed: int) -> Simulation:
    return _simulation(seed)


@_register("view_change", "the primary crashes: a view change makes r1 the primary", """\
A view change (V1-V3): the primary r0 crashes after the first request. The client retries its
second request; the backups' request timers fire, they send VIEW-CHANGEs for view 1, and r1,
the new primary, gathers 2f + 1 of them into a NEW-VIEW whose O-set re-proposes what may have
prepared. The request then commits in view 1.""")
def _view_change(seed: int) -> Simulation:
    sim = _simulation(seed)
    _at(sim, 5.5, "r0, the primary, crashes", lambda s: s.crash(0))
    return sim


@_register("state_transfer", "a lagging replica fetches the state of a stable checkpoint", """\
State transfer (C1, C2, S1): r3 is cut off while the others execute n1 and n2; they checkpoint
every 2 batches, so n2 becomes stable and they discard the log below it. After the network
heals, r3 prepares n3 but cannot execute it; its catch-up timer asks r0 for the log, and r0
answers with the proof that n2 is stable (2f + 1 CHECKPOINTs) and the batch n3. r3 gives
batches in flight state_transfer_timeout_ms to arrive, then fetches the snapshot at n2 in
32-byte chunks, each checked against the proven digest, restores it and executes n3.""")
def _state_transfer(seed: int) -> Simulation:
    sim = _simulation(seed, clients=1, requests=3,
                      config_overrides={"checkpoint_interval": 2, "log_window": 4,
                                        "state_chunk_bytes": 32})
    partition: list = []
    _at(sim, 0.5, "r3 is cut off from the other replicas (messages to and from it are lost)",
        lambda s: partition.append(s.network.isolate(3, [0, 1, 2])))
    _at(sim, 7, "the client pauses until 60 ms, after its second request",
        lambda s: s.pause_clients(60), fault=False)
    _at(sim, 50, "the network heals", lambda s: s.network.heal(partition[0]))
    return sim


@_register("byzantine_primary", "an equivocating primary, then a view change", """\
A Byzantine primary (N3, N10, V1-V3): r0 equivocates. It sends r1 one signed PRE-PREPARE for n1
and r2 and r3 another (same request, another batch timestamp: another digest), and 50 ms later
each the other version, which they refuse. r2 and r3 prepare theirs (the PRE-PREPARE and 2f = 2
matching PREPAREs) but their two COMMITs are short of the 2f + 1 = 3 needed: nothing executes.
The request timers fire, the replicas change view, and r1's NEW-VIEW carries the prepared batch
into view 1, where it commits; r1's own new proposal of the request executes as a duplicate.""")
def _byzantine_primary(seed: int) -> Simulation:
    return _simulation(seed, requests=1, behaviours={0: EquivocatingPrimary(split=1)})


def render(name: str) -> str:
    """The transcript of scenario `name` as text (its header, then the run). Raises KeyError
    for an unknown name."""
    entry = SCENARIOS[name]
    sim = entry.build(entry.seed)
    transcript = Transcript(sim)
    finished = sim.run(until_ms=entry.until_ms)
    transcript.finish()
    violations = [*(v for check in checkers.SAFETY_CHECKERS for v in check(sim)),
                  *checkers.kv_append_linearizability(sim), *checkers.liveness(sim, finished)]
    clients = len(sim.clients)
    header = [f"# {name}: {entry.title}",
              f"# seed {entry.seed}, n = 4 (f = 1), {clients} "
              f"client{'s' if clients != 1 else ''}, {LATENCY_MS:g} ms per message"
              + "".join(f", r{r} Byzantine ({type(b).__name__})"
                        for r, b in sorted(sim.behaviours.items()))]
    header += [f"# {line}" for line in entry.summary.splitlines()]
    header += [
        "#",
        "# Each line: virtual time (ms), then either `sender → receiver  MESSAGE` for a",
        "# delivered message (vN view, nN sequence number, d= digest; `✗ reason`: the receiver",
        "# dropped it; `(again)`: a copy delivered before), or `node  * event` for what a",
        "# replica or client did. `--` lines comment on the key moments. Lost messages are",
        "# not shown: only deliveries are.",
        f"# Regenerate: python -m simulations transcript {name} --write",
        "",
    ]
    committed = sim.committed()
    requested = sum(len(c.record.operations) for c in sim.clients)
    footer = ["", f"-- end at {sim.now_us / 1000:.3f} ms: {committed} of {requested} requests "
                  f"completed; checkers: "
                  + ("no violation" if not violations else
                     "; ".join(f"{v.checker}: {v.message}" for v in violations))]
    return "\n".join(header) + "\n" + transcript.text() + "\n".join(footer) + "\n"


def path_of(name: str) -> Path:
    return TRANSCRIPT_DIR / f"{name}.txt"


def command(name: str | None, *, write: bool = False) -> int:
    """`python -m simulations transcript [NAME|all] [--write]`: without a name, list the
    transcripts; with one, print it, or with `write` rewrite its file (`all`: every one).
    Returns the exit status: 2 for an unknown name."""
    if name is None:
        for entry in SCENARIOS.values():
            print(f"{entry.name} {entry.title}")
        return 0
    names = list(SCENARIOS) if name == "all" else [name]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown transcript {unknown[0]!r}; known: all, {', '.join(SCENARIOS)}",
              file=sys.stderr)
        return 2
    for each in names:
        text = render(each)
        if write:
            path = path_of(each)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        else:
            print(text, end="")
    return 0
