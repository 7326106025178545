"""Each example in examples/ runs from the repository root as the README says, and does what
it claims (issue 16 item 1). Method: run it in a process of its own, read what it printed; the
counter's contract (bytes in and out, bad input as a result, snapshot and restore) directly."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from examples.counter import Counter
from pbft.app import ExecutionContext
from pbft.config import METRICS_PORT_OFFSET

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 180  # generous: a loaded 2-core machine; the examples take seconds


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def run_module(name: str) -> str:
    return run(sys.executable, "-m", name).stdout


def test_counter_embedded_orders_reads_and_refuses_bad_input():
    out = run_module("examples.counter_embedded")
    assert "add 1: total 1" in out and "add 2: total 3" in out and "add 39: total 42" in out
    assert "read-only get: 42" in out
    assert "bad input is a result: error: unknown operation" in out


def test_counter_simulated_survives_an_equivocating_primary():
    """V2/N4 (agreement despite an equivocating primary), checked by the simulator's checkers."""
    out = run_module("examples.counter_simulated")
    assert "safety and liveness held" in out
    totals = re.search(r"counter on the correct replicas: \{(.*)\}", out).group(1)
    values = {int(v) for v in re.findall(r"\d+: (\d+)", totals)}
    assert values == {48}  # 3 clients × 20 operations, every 5th a read: 48 adds, on all alike
    refused = int(re.search(r"conflicting PRE-PREPAREs refused by correct replicas: (\d+)", out)
                  .group(1))  # fmt: skip
    assert refused > 0


def test_ledger_session_refuses_financing_an_encumbered_receivable():
    """docs/TRADE-DOMAIN.md, scenario 4: the same receivable offered to a second bank."""
    out = run_module("examples.ledger_session")
    lines = out.splitlines()
    assert any("BANK-A fin.approve F-1" in x and x.rstrip().endswith("ok APPROVED") for x in lines)
    assert any("BANK-B fin.approve F-2" in x and "refused: ALREADY_ENCUMBERED" in x for x in lines)
    assert sum("party.admit" in x and x.rstrip().endswith("ok ACTIVE") for x in lines) == 4


def consecutive_free_ports(count: int) -> int:
    """A base port such that base .. base + count - 1 and each + METRICS_PORT_OFFSET are free
    now (`pbft keygen --base-port` numbers the replicas' ports from it)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 60_000 - METRICS_PORT_OFFSET - count)
        ports = [base + i for i in range(count)] + [base + i + METRICS_PORT_OFFSET
                                                    for i in range(count)]
        held = []
        try:
            for port in ports:
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no block of free ports found")


def test_counter_cluster_runs_the_counter_as_processes():
    """The shell example: pbft keygen, pbft cluster --app examples.counter:Counter, a client in
    another process, pbft status; it stops the cluster and removes its directory on the way out."""
    bin_dir = str(Path(sys.executable).parent)  # where `pbft` and `python` are installed
    base = consecutive_free_ports(4)
    result = run("sh", "examples/counter_cluster.sh",
                 env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "BASE_PORT": str(base)})
    out = result.stdout
    assert "add 5: 5" in out and "add 37: 42" in out and "get: 42" in out
    assert f"replica 0: 127.0.0.1:{base}" in out
    assert "4 of 4 replicas healthy" in out
    directory = re.search(r"wrote (\S+)/cluster\.toml", out).group(1)
    assert not Path(directory).exists()
    leftovers = subprocess.run(["pgrep", "-f", f"{directory}/cluster.toml"], capture_output=True,
                               text=True, check=False)  # fmt: skip
    assert leftovers.stdout.strip() == ""


def test_counter_client_names_a_missing_key_file_in_one_line(tmp_path):
    config = tmp_path / "cluster.toml"
    run(sys.executable, "-m", "pbft.runtime.cli", "keygen", "--out", str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "examples.counter_client", str(config), str(tmp_path / "nope.key"),
         "get"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.key" in result.stderr
    assert "Traceback" not in result.stderr


CONTEXT = ExecutionContext(sequence=1, client=b"c" * 32, timestamp_ms=0)


def test_counter_gives_bad_input_an_error_result_and_changes_nothing():
    """docs/APPLICATION.md, bad input is a result: each step on one counter, in order."""
    counter = Counter()
    steps = [
        (b"add 5", b"5"),
        (b"add -7", b"-2"),
        (b"add x", b"error: add takes an integer"),
        (b"add " + b"9" * 30, b"error: the total would leave the 64-bit range"),
        (b"mul 2", b"error: unknown operation (expected add N or get)"),
        (b"get", b"-2"),  # none of the refused operations changed the total
    ]
    assert [counter.execute(operation, CONTEXT) for operation, _ in steps] == [r for _, r in steps]
    assert counter.query(b"get", b"c" * 32) == b"-2"


def test_counter_snapshot_restores_the_same_state_and_refuses_junk():
    counter = Counter()
    counter.execute(b"add 41", CONTEXT)
    copy = Counter()
    copy.restore(counter.snapshot())
    assert copy.digest() == counter.digest() and copy.query(b"get", b"") == b"41"
    with pytest.raises(ValueError):
        Counter().restore(b"not a number")


def test_counter_client_without_a_quorum_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    """N7 not reached in time: the client's NoQuorumError (outcome unknown) is one line, exit 1."""
    from contextlib import asynccontextmanager

    from examples import counter_client
    from pbft.runtime import NoQuorumError

    @asynccontextmanager
    async def unreachable(config, signer, **options):
        raise NoQuorumError("no quorum within 10.0 s: connected to replicas none of 4",
                            reachable=[], answered=[], needed=2)  # fmt: skip
        yield

    run(sys.executable, "-m", "pbft.runtime.cli", "keygen", "--out", str(tmp_path))
    monkeypatch.setattr(counter_client, "connect", unreachable)
    code = counter_client.main([str(tmp_path / "cluster.toml"),
                                str(tmp_path / "keys" / "client-0.key"), "get"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no quorum within 10.0 s" in err
