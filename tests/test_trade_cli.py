"""Issue 16, item 2: the ledger's command line needs no hand-made file. `founders` writes the
founders.json every replica of `tradeapp.service:ledger` reads (tradeapp/README.md,
"Bootstrap": the founding FX-ADMINs), from `pbft keygen` output, a key given in hex, or a key it
writes; it refuses what would give a ledger nobody can use. Results print as rich tables or,
with --json, one JSON object."""

from __future__ import annotations

import json

import pytest

from pbft.ed25519 import Ed25519Signer, read_key_file, write_key_file
from pbft.runtime.cluster import generate_cluster
from tradeapp.cli import format_table, main, result_json
from tradeapp.commands import Accepted, Rejected
from tradeapp.errors import ErrorCode
from tradeapp.scenario import FX_ADMIN
from tradeapp.service import read_founders


@pytest.fixture
def open_cluster(tmp_path):
    """What `pbft keygen --open-admission --clients 1` writes."""
    return generate_cluster(tmp_path / "ledger", clients=1, admit_clients=False)


def founders(files, *specs: str, force: bool = False) -> int:
    args = ["--config", str(files.config_path), "founders"]
    for spec in specs:
        args += ["--founder", spec]
    return main(args + (["--force"] if force else []))


def test_a_bare_founder_id_gets_a_new_key_file_beside_the_configuration(open_cluster, capsys):
    assert founders(open_cluster, FX_ADMIN) == 0
    key_path = open_cluster.directory / "keys" / f"{FX_ADMIN}.key"
    assert key_path.stat().st_mode & 0o777 == 0o600
    written = read_founders(open_cluster.directory / "founders.json")
    assert written == {FX_ADMIN: read_key_file(key_path).public_key}
    out = capsys.readouterr().out
    assert f"{key_path} (new)" in out and "--app tradeapp.service:ledger" in out
    # Run again (--force): the existing key file is used, not replaced.
    assert founders(open_cluster, FX_ADMIN, force=True) == 0
    assert read_founders(open_cluster.directory / "founders.json") == written
    assert f"{key_path} (existing)" in capsys.readouterr().out


def test_founders_from_a_keygen_client_key_and_from_hex(open_cluster):
    other = Ed25519Signer.generate().public_key
    assert founders(open_cluster, f"{FX_ADMIN}={open_cluster.client_keys[0]}",
                    f"FX-ADMIN-2={other.hex()}") == 0  # fmt: skip
    assert read_founders(open_cluster.directory / "founders.json") == {
        FX_ADMIN: open_cluster.client_signers()[0].public_key, "FX-ADMIN-2": other,
    }  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), [
    ("bad id!", "'bad id!' is not a participant id"),
    ("FX-ADMIN=/nowhere/admin.key", "--founder FX-ADMIN=/nowhere/admin.key: /nowhere/admin.key: "
                                    "cannot read key file: No such file or directory"),
    ("FX-ADMIN=REPLICA", "holds replica 0's key, not a client's"),
])  # fmt: skip
def test_founders_refuses_a_bad_id_or_key_naming_it(open_cluster, capsys, spec, message):
    spec = spec.replace("REPLICA", str(open_cluster.replica_keys[0]))
    assert founders(open_cluster, spec) == 2
    err = capsys.readouterr().err
    assert err.startswith("tradeapp founders: ") and message in err, err
    assert not (open_cluster.directory / "founders.json").exists()


def test_founders_refuses_an_id_given_twice(open_cluster, capsys):
    assert founders(open_cluster, FX_ADMIN, f"{FX_ADMIN}={'ab' * 32}") == 2
    assert "--founder FX-ADMIN is given twice" in capsys.readouterr().err


def test_founders_refuses_a_configuration_that_lists_its_clients(tmp_path, capsys):
    """N8': listed clients only would never serve the participants party.admit admits."""
    listed = generate_cluster(tmp_path / "listed", clients=1)
    assert founders(listed, FX_ADMIN) == 2
    assert "generate it with `pbft keygen --open-admission`" in capsys.readouterr().err
    assert not (listed.directory / "founders.json").exists()


def test_founders_never_replaces_the_genesis_silently(open_cluster, capsys):
    assert founders(open_cluster, f"{FX_ADMIN}={'ab' * 32}") == 0
    before = (open_cluster.directory / "founders.json").read_text()
    assert founders(open_cluster, f"{FX_ADMIN}={'cd' * 32}") == 2
    assert "founders.json exists (the ledger's genesis); --force replaces it" in \
        capsys.readouterr().err  # fmt: skip
    assert (open_cluster.directory / "founders.json").read_text() == before


def test_a_replicas_key_is_refused_as_a_participants_key(open_cluster, capsys):
    code = main(["--config", str(open_cluster.config_path), "--key",
                 str(open_cluster.replica_keys[3]), "report", "rejections"])  # fmt: skip
    assert code == 2
    assert "holds replica 3's key, not a client's" in capsys.readouterr().err


def test_a_key_file_readable_by_others_is_named_with_the_fix(open_cluster, tmp_path, capsys):
    loose = tmp_path / "loose.key"
    write_key_file(loose, Ed25519Signer.generate())
    loose.chmod(0o644)
    code = main(["--config", str(open_cluster.config_path), "--key", str(loose), "report",
                 "rejections"])  # fmt: skip
    assert code == 2
    assert f"--key {loose}: key file mode is 644; it must be 600 (chmod 600 {loose})" in \
        capsys.readouterr().err  # fmt: skip


def test_results_as_json_and_as_rich_tables():
    assert json.loads(result_json(Accepted({"lc_id": "LC-1", "key": b"\x01\x02"}))) == \
        {"ok": True, "value": {"lc_id": "LC-1", "key": "0102"}}  # fmt: skip
    assert json.loads(result_json(Rejected(ErrorCode.FORBIDDEN, "no"))) == \
        {"ok": False, "code": "FORBIDDEN", "message": "no"}  # fmt: skip
    lines = format_table(["bank", "amount", "ok"], [["BANK-A", 5, True], ["[b]BANK-BB", 10_000,
                                                                          False]],
                         title="T").splitlines()  # fmt: skip
    assert lines[0] == "T"
    assert lines[1].split() == ["bank", "amount", "ok"]
    assert set(lines[2]) == {"─"}
    assert lines[3].split() == ["BANK-A", "5", "yes"]
    assert lines[4].split() == ["[b]BANK-BB", "10000", "no"], "cells are text, not rich markup"
    assert lines[3].index("5") == lines[4].index("10000") + 4, "numbers are right-aligned"


def test_a_money_moving_command_without_its_id_gets_a_fresh_one_said_on_stderr(capsys):
    """tradeapp/README.md, resubmission ids: the id makes a resubmission safe; the command
    line generates one when none is given and prints it, so the same command can be sent
    again with it."""
    from tradeapp.cli import build_parser, operation_from_args

    parser = build_parser()
    args = parser.parse_args(["submit", "fin.repay", "--fin-id", "F-1", "--amount-minor", "5"])
    op = operation_from_args(args)
    assert op.repayment_id.startswith("RP-") and len(op.repayment_id) == 3 + 24
    assert f"fin.repay: --repayment-id {op.repayment_id} (generated" in capsys.readouterr().err
    again = operation_from_args(parser.parse_args(
        ["submit", "fin.repay", "--fin-id", "F-1", "--amount-minor", "5", "--repayment-id",
         op.repayment_id]))  # fmt: skip
    assert again == op and capsys.readouterr().err == ""
    with pytest.raises(SystemExit):  # other commands' fields stay required
        parser.parse_args(["submit", "fin.approve", "--fin-id", "F-1"])


def test_a_replica_without_founders_json_names_the_command_that_writes_it(open_cluster,
                                                                        monkeypatch):
    """The factory `tradeapp.service:ledger` runs in each replica process: a missing
    founders.json is a ValueError (the replica exits with code 2) naming the file and the
    `founders` command; a malformed one names the file."""
    from tradeapp.service import FOUNDERS_NAME, ledger

    config = str(open_cluster.config_path)
    monkeypatch.setattr("sys.argv", ["pbft", "replica", "--config", config, "--id", "0"])
    with pytest.raises(ValueError) as missing:
        ledger()
    assert str(open_cluster.directory / FOUNDERS_NAME) in str(missing.value)
    assert f"python -m tradeapp.cli --config {config} founders --founder FX-ADMIN" in str(
        missing.value)  # fmt: skip
    founders_path = open_cluster.directory / FOUNDERS_NAME
    for text, message in (("{", "not JSON"), ('{"FX-ADMIN": "zz"}', "expected 64 hex digits"),
                          ('{"FX-ADMIN": 7}', "expected 64 hex digits")):  # fmt: skip
        founders_path.write_text(text)
        with pytest.raises(ValueError, match=message) as bad:
            ledger()
        assert str(founders_path) in str(bad.value)
    assert founders(open_cluster, FX_ADMIN, force=True) == 0
    assert set(ledger().ledger.state.tables["participant"]) == {FX_ADMIN}
