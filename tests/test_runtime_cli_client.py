"""Issue 16, item 2: the shell client, `pbft submit` and `pbft query`, against a running
4-replica cluster (the key-value verbs, raw bytes, decoded results, --json); and the client's
mistakes (item 4): no reachable replica fails fast naming the addresses tried, a replica's key
is refused as a client's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from pbft.app import application_error_result, kv_get, kv_put
from pbft.codec import packb_canonical
from pbft.runtime.cli import main
from pbft.runtime.cli_client import decode_for_display
from pbft.runtime.client import NoQuorumError, connect
from pbft.runtime.cluster import LocalCluster, generate_cluster

ROOT = Path(__file__).resolve().parent.parent
PBFT = [sys.executable, "-m", "pbft.runtime.cli"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    files = generate_cluster(tmp_path_factory.mktemp("kv"), clients=2)
    with LocalCluster(files) as running:
        running.start_all()
        running.wait_all_ready_blocking()
        yield running


def call(cluster, capsys, command: str, *args: str) -> tuple[int, str]:
    files = cluster.files
    code = main([command, "--config", str(files.config_path), "--key",
                 str(files.client_keys[0]), *args])  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out.strip() + captured.err.strip()


def test_submit_and_query_the_key_value_store(cluster, capsys):
    assert call(cluster, capsys, "submit", "put", "greeting", "hello") == (0, "ok (no value)")
    assert call(cluster, capsys, "query", "get", "greeting") == (0, "hello")
    assert call(cluster, capsys, "submit", "append", "greeting", ", world") == (0, "hello, world")
    assert call(cluster, capsys, "submit", "get", "greeting") == (0, "hello, world")
    code, out = call(cluster, capsys, "submit", "cas", "greeting", "nope", "x")
    assert code == 1 and out.startswith("error cas_mismatch: ")
    assert call(cluster, capsys, "submit", "cas", "greeting", "hello, world", "bye") == \
        (0, "ok (no value)")  # fmt: skip
    assert call(cluster, capsys, "submit", "cas", "fresh", "new", "--if-absent") == \
        (0, "ok (no value)")  # fmt: skip
    assert call(cluster, capsys, "submit", "delete", "greeting") == (0, "bye")
    assert call(cluster, capsys, "query", "get", "greeting") == (0, "ok (no value)")


def test_values_in_hex_and_results_as_json(cluster, capsys):
    assert call(cluster, capsys, "submit", "put", "blob", "00ff", "--hex")[0] == 0
    code, out = call(cluster, capsys, "query", "--json", "get", "blob")
    assert code == 0
    assert json.loads(out) == {"result_hex": packb_canonical(["ok", b"\x00\xff"]).hex(),
                               "ok": True, "value": {"hex": "00ff"}}  # fmt: skip
    code, out = call(cluster, capsys, "submit", "put", "blob", "0g", "--hex")
    assert code == 2 and "VALUE '0g': not hex" in out


def test_raw_operations_are_bytes_and_their_results_are_decoded(cluster, capsys, tmp_path):
    assert call(cluster, capsys, "submit", "raw", kv_put("r", b"1").hex()) == (0, '["ok", null]')
    # The application's own error result for junk, decoded from msgpack.
    code, out = call(cluster, capsys, "submit", "raw", "--text", "junk")
    assert code == 0 and json.loads(out)[:2] == ["error", "malformed"]
    operation = tmp_path / "op.bin"
    operation.write_bytes(kv_get("r"))
    code, out = call(cluster, capsys, "query", "--json", "raw", "--file", str(operation))
    assert code == 0 and json.loads(out)["msgpack"] == ["ok", {"text": "1"}]
    code, out = call(cluster, capsys, "submit", "raw", "--text", "a", "--file", str(operation))
    assert code == 2 and "give the operation once" in out


def test_decoding_names_an_application_error_and_shows_other_bytes():
    ok, described = decode_for_display(application_error_result(KeyError("x")), "raw")
    assert not ok and described["application_error"] == "KeyError"
    ok, described = decode_for_display(b"\xc1\xff", "raw")  # not msgpack, not UTF-8
    assert ok and described["hex"] == "c1ff"
    ok, described = decode_for_display(b"\xc1", "kv")
    assert not ok and "undecodable" in described


def test_a_client_with_no_reachable_replica_fails_fast_naming_the_addresses(tmp_path):
    """The cluster is not running: the call fails after --connect-timeout (0.5 s here), not
    after its --timeout of 60 s, and names every address it tried."""
    files = generate_cluster(tmp_path, clients=1)
    result = subprocess.run(
        [*PBFT, "submit", "--config", str(files.config_path), "--key", str(files.client_keys[0]),
         "--timeout", "60", "--connect-timeout", "0.5", "put", "k", "v"],
        capture_output=True, text=True, timeout=40, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("pbft submit: no replica reachable for ")
    for info in files.config.replicas:
        assert f"{info.host}:{info.port} (replica {info.id})" in line
    assert "connection failures: connect_failed" in line


@pytest.mark.trio
async def test_connect_with_unreachable_timeout_raises_no_quorum_naming_addresses(tmp_path):
    files = generate_cluster(tmp_path, clients=1)
    started = trio.current_time()
    with trio.fail_after(30):
        async with connect(files.config, files.client_signers(), timeout_s=60,
                           unreachable_timeout_s=0.3) as client:  # fmt: skip
            with pytest.raises(NoQuorumError) as raised:
                await client.submit(kv_put("k", b"v"))
    assert raised.value.reachable == [] and raised.value.answered == []
    assert str(files.config.replicas[3].port) in str(raised.value)
    assert trio.current_time() - started < 60, "it did not wait out the call's timeout"


@pytest.mark.trio
async def test_waiting_for_a_quorum_names_the_addresses_tried(tmp_path):
    files = generate_cluster(tmp_path, clients=1)
    with pytest.raises(NoQuorumError) as raised:
        async with connect(files.config, files.client_signers(), wait_connected_s=0.3):
            pass
    info = files.config.replicas[0]
    assert f"tried {info.host}:{info.port} (replica 0)" in str(raised.value)


@pytest.mark.trio
async def test_connect_refuses_a_replicas_key_with_the_reason(tmp_path):
    files = generate_cluster(tmp_path, clients=1)
    with pytest.raises(ValueError, match="is replica 2's key, not a client's: the replicas take"):
        async with connect(files.config, [files.client_signers()[0], files.replica_signer(2)]):
            pass


def test_pbft_submit_refuses_a_replicas_key_with_the_reason(tmp_path):
    files = generate_cluster(tmp_path, clients=1)
    result = subprocess.run(
        [*PBFT, "submit", "--config", str(files.config_path), "--key", str(files.replica_keys[1]),
         "get", "k"], capture_output=True, text=True, timeout=40, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"pbft submit: --key {files.replica_keys[1]} holds replica 1's key, not a client's: the "
        "replicas take a connection with that key for replica 1 itself and never answer it as "
        "a client. Use a client key (`pbft keygen` writes keys/client-N.key)"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a", "b", "c"], "cas KEY EXPECTED NEW: give two values (or NEW with --if-absent)"),
        (["a"], "cas KEY EXPECTED NEW: give two values (or NEW with --if-absent)"),
        (["a", "b", "--if-absent"], "cas KEY NEW --if-absent: give exactly one value, NEW"),
    ],
)
def test_cas_with_the_wrong_number_of_values_says_which_it_takes(tmp_path, capsys, values,
                                                                  message):  # fmt: skip
    """A usage mistake (exit 2) found before connecting: no cluster runs here."""
    files = generate_cluster(tmp_path, clients=1)
    code = main(["submit", "--config", str(files.config_path), "--key",
                 str(files.client_keys[0]), "cas", "k", *values])  # fmt: skip
    assert code == 2
    assert capsys.readouterr().err.strip() == f"pbft submit: {message}"


@pytest.mark.trio
async def test_connect_refuses_an_empty_pool_a_key_twice_and_a_first_signer_without_a_seed(
    tmp_path,
):
    """`connect`'s documented refusals, raised before any connection is made."""
    class Wrapped:  # a Signer, but not an Ed25519Signer: it has no seed for the TLS key
        def __init__(self, inner) -> None:
            self.public_key, self.sign = inner.public_key, inner.sign

    files = generate_cluster(tmp_path, clients=2)
    first, second = files.client_signers()
    with pytest.raises(ValueError, match="at least one signer"):
        async with connect(files.config, []):
            pass
    with pytest.raises(ValueError, match="a key is given twice"):
        async with connect(files.config, [first, second, first]):
            pass
    with pytest.raises(TypeError, match="the first signer must be an Ed25519Signer"):
        async with connect(files.config, [Wrapped(second), first]):
            pass
