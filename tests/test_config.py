"""Cluster configuration: each validation error by example, quorums, TOML round-trips."""

from __future__ import annotations

import dataclasses

import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbft.core import sizes
from pbft.config import (
    BOUND_NAMES,
    ClusterConfig,
    ConfigError,
    ReplicaInfo,
    dump,
    dumps,
    load,
    loads,
)


def replicas(n: int) -> list[ReplicaInfo]:
    return [ReplicaInfo(i, bytes([i + 1]) * 32, "127.0.0.1", 9000 + i) for i in range(n)]


def toml_text(n: int = 4, header: str = "", replica_extra: str = "") -> str:
    tables = "".join(
        f'[[replicas]]\nid = {i}\npublic_key = "{(bytes([i + 1]) * 32).hex()}"\n{replica_extra}\n'
        for i in range(n)
    )
    return header + "\n" + tables


# --- Quorum arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "f", "quorum"), [(4, 1, 3), (5, 1, 4), (7, 2, 5), (10, 3, 7)])
def test_f_and_quorum_follow_n(n, f, quorum):
    """f = (n - 1) // 3; the quorum is 2f + 1 for n = 3f + 1 and ceil((n + f + 1) / 2) otherwise."""
    config = ClusterConfig.create(replicas(n))
    assert (config.n, config.f, config.quorum) == (n, f, quorum)


@pytest.mark.parametrize("n", range(4, 40))
def test_quorums_intersect_in_a_correct_replica_and_are_reachable(n):
    """Safety: two quorums share f + 1 replicas. Liveness: the n - f correct ones form a quorum.
    (From n = 16 a full window's NEW-VIEW outgrows the default frame: a larger frame here.)"""
    config = ClusterConfig.create(replicas(n), frame_bytes_max=64 * 1024 * 1024)
    assert 2 * config.quorum - config.n >= config.f + 1
    assert config.quorum <= config.n - config.f
    if n % 3 == 1:
        assert config.quorum == 2 * config.f + 1


@pytest.mark.parametrize("n", [4, 5, 7, 10])
def test_primary_rotates_round_robin(n):
    config = ClusterConfig.create(replicas(n))
    assert [config.primary(v) for v in range(2 * n)] == list(range(n)) * 2
    assert config.public_key(n - 1) == bytes([n]) * 32


def test_defaults_are_valid_and_create_keeps_them():
    config = ClusterConfig.create(replicas(4))
    assert config == ClusterConfig(tuple(replicas(4)))
    assert config.batch_size_max == 100 and config.log_window == 256
    assert ClusterConfig.create(replicas(4), batch_size_max=7).batch_size_max == 7


def test_replicas_given_as_a_list_are_stored_as_a_tuple():
    assert isinstance(ClusterConfig(replicas(4)).replicas, tuple)  # type: ignore[arg-type]
    hash(ClusterConfig(replicas(4)))  # type: ignore[arg-type]


# --- Validation errors -----------------------------------------------------------------------


def test_three_replicas_are_too_few():
    with pytest.raises(ConfigError, match=r"n = 3 .*3f \+ 1 >= 4"):
        ClusterConfig.create(replicas(3))


def test_duplicate_replica_id():
    rs = replicas(4)
    rs[2] = dataclasses.replace(rs[2], id=1)
    with pytest.raises(ConfigError, match=r"duplicate replica id 1"):
        ClusterConfig.create(rs)


def test_replica_ids_must_be_positions():
    rs = replicas(4)
    rs[1], rs[2] = rs[2], rs[1]
    with pytest.raises(ConfigError, match=r"replicas\[1\] has id 2.*0\.\.3 in order"):
        ClusterConfig.create(rs)
    rs = [dataclasses.replace(r, id=r.id + 1) for r in replicas(4)]
    with pytest.raises(ConfigError, match=r"replicas\[0\] has id 1"):
        ClusterConfig.create(rs)


def test_duplicate_public_key():
    rs = replicas(4)
    rs[3] = dataclasses.replace(rs[3], public_key=rs[0].public_key)
    with pytest.raises(ConfigError, match=r"duplicate public key: replicas\[0\] and replicas\[3\]"):
        ClusterConfig.create(rs)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_public_key_must_be_32_bytes(length):
    rs = replicas(4)
    rs[2] = dataclasses.replace(rs[2], public_key=b"\x09" * length)
    expected = rf"replicas\[2\]\.public_key must be 32 bytes.*got {length}"
    with pytest.raises(ConfigError, match=expected):
        ClusterConfig.create(rs)


@pytest.mark.parametrize("port", [-1, 65_536, True, "80"])
def test_port_out_of_range(port):
    rs = replicas(4)
    rs[0] = dataclasses.replace(rs[0], port=port)
    with pytest.raises(ConfigError, match=r"replicas\[0\]\.port"):
        ClusterConfig.create(rs)


@pytest.mark.parametrize(("name", "value"), [
    (name, value)
    for name in BOUND_NAMES
    for value in (0, -5, True, 1.5, "10", None)
    # 0 switches the delay off, or asks for the default propose timeout: checked below
    if not (name in ("batch_delay_ms", "propose_timeout_ms") and value == 0)
])
def test_every_bound_is_a_positive_int(name, value):
    with pytest.raises(ConfigError, match=name):
        ClusterConfig.create(replicas(4), **{name: value})


def test_batch_delay_is_zero_by_default_and_below_the_request_timeout():
    """N2: a batching delay of 0 is the classic rule (close a batch at once when none is in
    flight); a delay must stay below request_timeout_ms, or a primary that waits for its batch
    to fill would look faulty to its backups (V1)."""
    assert ClusterConfig.create(replicas(4)).batch_delay_ms == 0
    config = ClusterConfig.create(replicas(4), batch_delay_ms=1_999, request_timeout_ms=2_000,
                                  propose_timeout_ms=2_000)
    assert config.batch_delay_ms == 1_999
    with pytest.raises(ConfigError, match="batch_delay_ms.*request_timeout_ms"):
        ClusterConfig.create(replicas(4), batch_delay_ms=2_000, request_timeout_ms=2_000)


def test_propose_timeout_defaults_from_the_batch_delay_and_request_timeout():
    """V1'': 0 means batch_delay_ms + request_timeout_ms // 4; an explicit value must lie above
    the batching delay (a primary filling its batch is not slow) and within the request
    timeout."""
    config = ClusterConfig.create(replicas(4), batch_delay_ms=100, request_timeout_ms=2_000)
    assert config.propose_timeout == 600
    assert ClusterConfig.create(replicas(4), propose_timeout_ms=300).propose_timeout == 300
    with pytest.raises(ConfigError, match="propose_timeout_ms"):
        ClusterConfig.create(replicas(4), batch_delay_ms=300, propose_timeout_ms=300)
    with pytest.raises(ConfigError, match="propose_timeout_ms"):
        ClusterConfig.create(replicas(4), request_timeout_ms=1_000, propose_timeout_ms=1_001)


@pytest.mark.parametrize(
    ("log_window", "checkpoint_interval"), [(100, 64), (64, 64), (96, 64), (10, 20)]
)
def test_checkpoint_interval_divides_log_window_at_least_twice(log_window, checkpoint_interval):
    """C1: checkpoints every K; the window L must hold at least two of them, K | L."""
    with pytest.raises(ConfigError, match=r"log_window.*checkpoint_interval"):
        ClusterConfig.create(
            replicas(4), log_window=log_window, checkpoint_interval=checkpoint_interval
        )
    k = checkpoint_interval
    ClusterConfig.create(replicas(4), log_window=2 * k, checkpoint_interval=k)


def test_batch_size_has_a_ceiling():
    with pytest.raises(ConfigError, match="batch_size_max"):
        ClusterConfig.create(replicas(4), batch_size_max=1_000_000)


def test_create_rejects_an_unknown_bound():
    with pytest.raises(ConfigError, match="batch_sise_max"):
        ClusterConfig.create(replicas(4), batch_sise_max=10)


def test_replace_revalidates():
    config = ClusterConfig.create(replicas(4))
    with pytest.raises(ConfigError, match="stash_max"):
        dataclasses.replace(config, stash_max=0)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- TOML ------------------------------------------------------------------------------------


def test_minimal_toml_uses_defaults():
    config = loads(toml_text(4))
    assert config == ClusterConfig.create(
        [ReplicaInfo(i, bytes([i + 1]) * 32) for i in range(4)]
    )


def test_toml_bounds_and_consistent_f():
    config = loads(toml_text(7, header="f = 2\nbatch_size_max = 10\nstash_max = 5\n"))
    assert (config.f, config.batch_size_max, config.stash_max) == (2, 10, 5)


def test_toml_f_inconsistent():
    expected = r"f inconsistent: f = 2 but n = 4 replicas tolerate f = 1"
    with pytest.raises(ConfigError, match=expected):
        loads(toml_text(4, header="f = 2\n"))


@pytest.mark.parametrize(
    ("header", "replica_extra", "named"),
    [
        ("batch_size_maximum = 10\n", "", "batch_size_maximum"),
        ("", "hots = 'a'\n", r"replicas\[0\]: unknown key\(s\): hots"),
        ("[network]\nlatency = 1\n", "", "network"),
    ],
)
def test_toml_unknown_key(header, replica_extra, named):
    with pytest.raises(ConfigError, match=named):
        loads(toml_text(4, header=header, replica_extra=replica_extra))


@pytest.mark.parametrize(
    ("header", "replica_extra", "named"),
    [
        ('batch_size_max = "100"\n', "", "batch_size_max must be an integer"),
        ("log_window = 256.0\n", "", "log_window must be an integer"),
        ("stash_max = true\n", "", "stash_max must be an integer"),
        ('f = "1"\n', "", "f must be an integer"),
        ("", "port = '9000'\n", r"replicas\[0\]\.port must be an integer"),
        ("", "host = 7\n", r"replicas\[0\]\.host must be a string"),
    ],
)
def test_toml_wrong_type(header, replica_extra, named):
    with pytest.raises(ConfigError, match=named):
        loads(toml_text(4, header=header, replica_extra=replica_extra))


def test_toml_bad_public_keys():
    text = toml_text(4).replace((bytes([1]) * 32).hex(), "zz" * 32, 1)
    with pytest.raises(ConfigError, match=r"replicas\[0\]\.public_key is not valid hex"):
        loads(text)
    text = toml_text(4).replace(f'"{(bytes([2]) * 32).hex()}"', "12", 1)
    with pytest.raises(ConfigError, match=r"replicas\[1\]\.public_key must be a hex string"):
        loads(text)
    text = toml_text(4).replace((bytes([3]) * 32).hex(), "ab" * 31, 1)
    with pytest.raises(ConfigError, match=r"replicas\[2\]\.public_key must be 32 bytes"):
        loads(text)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("batch_size_max = \n", "invalid TOML"),
        ("batch_size_max = 10\n", "missing"),
        ("replicas = 3\n", "array of tables"),
        ("[[replicas]]\nid = 0\n", r"replicas\[0\]: missing key public_key"),
    ],
)
def test_toml_structure_errors(text, named):
    with pytest.raises(ConfigError, match=named):
        loads(text)


def test_toml_three_replicas_too_few():
    with pytest.raises(ConfigError, match=r"n = 3"):
        loads(toml_text(3))


def test_dump_and_load_a_file(tmp_path):
    config = ClusterConfig.create(replicas(5), request_timeout_ms=750)
    path = tmp_path / "cluster.toml"
    dump(config, path)
    assert load(path) == config
    assert load(str(path)) == config
    assert "f = 1" in path.read_text()


@st.composite
def cluster_configs(draw) -> ClusterConfig:
    n = draw(st.integers(4, 13))
    keys = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=n, max_size=n, unique=True))
    host_characters = st.characters(codec="utf-8", exclude_categories=("Cs",))
    hosts = st.text(host_characters, min_size=1, max_size=20)
    rs = [
        ReplicaInfo(i, keys[i], draw(hosts), draw(st.integers(0, 65_535))) for i in range(n)
    ]
    k = draw(st.integers(1, 1_000))
    bounds = {name: draw(st.integers(1, 2**40)) for name in BOUND_NAMES}
    bounds["checkpoint_interval"] = k
    bounds["log_window"] = k * draw(st.integers(2, 64))
    bounds["batch_size_max"] = draw(st.integers(1, 10_000))
    bounds["batch_delay_ms"] = draw(st.integers(0, bounds["request_timeout_ms"] - 1))
    bounds["propose_timeout_ms"] = draw(st.just(0) | st.integers(
        bounds["batch_delay_ms"] + 1, bounds["request_timeout_ms"]))
    # The size bounds are drawn as room above what the bound below them needs.
    largest_request = sizes.REQUEST_OVERHEAD_BYTES + bounds["operation_bytes_max"]
    bounds["batch_bytes_max"] = (sizes.PRE_PREPARE_OVERHEAD_BYTES + largest_request
                                 + draw(st.integers(0, 2**30)))
    bounds["pending_bytes_max"] = largest_request + draw(st.integers(0, 2**30))
    bounds["stash_bytes_max"] = bounds["batch_bytes_max"] + draw(st.integers(0, 2**30))
    draft = types.SimpleNamespace(n=n, **bounds)
    bounds["frame_bytes_max"] = max(
        sizes.CONTAINER_OVERHEAD_BYTES + bounds["batch_bytes_max"] + sizes.VOTE_BYTES * n,
        sizes.new_view_bytes_max(draft), sizes.view_change_bytes_max(draft),
        sizes.state_chunk_bytes_max(draft),
    ) + draw(st.integers(0, 2**30))
    return ClusterConfig.create(rs, **bounds)


@settings(max_examples=60, deadline=None)
@given(cluster_configs())
def test_toml_round_trips_exactly(config):
    text = dumps(config)
    assert loads(text) == config
    assert dumps(loads(text)) == text
