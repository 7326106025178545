"""`pbft.runtime.embedded_cluster`, the whole cluster inside one trio program that the examples
and docs/APPLICATION.md use: what it starts, where it stores, what it leaves, how errors leave
it. Method: start 4 replicas of the counter, use them, look at what remains afterwards."""

from __future__ import annotations

import pytest
import trio

from examples.counter import Counter
from pbft.runtime import NoQuorumError, embedded_cluster


@pytest.mark.trio
async def test_each_replica_gets_a_fresh_app_and_the_generated_clients_are_the_admitted_ones(
    tmp_path,
):
    """N8': by default the configuration lists exactly the generated clients."""
    made: list[Counter] = []

    def factory() -> Counter:
        made.append(Counter())
        return made[-1]

    with trio.fail_after(120):
        async with embedded_cluster(factory, clients=2, data_dir=tmp_path) as cluster:
            assert len(made) == 4 and len({id(app) for app in made}) == 4
            assert cluster.config.clients == tuple(s.public_key for s in cluster.client_signers)
            ports = [replica.port for replica in cluster.config.replicas]
            assert [node.port for node in cluster.nodes] == ports
            async with cluster.connect(1) as client:
                assert await client.submit(b"add 2") == b"2"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"replica-{i}" for i in range(4)]


@pytest.mark.trio
async def test_without_admitted_clients_the_configuration_lists_none():
    with trio.fail_after(120):
        async with embedded_cluster(Counter, clients=1, admit_clients=False) as cluster:
            assert cluster.config.clients == ()
            scratch = cluster.data_dir
            assert scratch.is_dir()
    assert not scratch.exists()  # the temporary data directory is removed on leaving


@pytest.mark.trio
async def test_a_lone_error_of_the_body_leaves_as_itself_not_in_a_group():
    with trio.fail_after(120), pytest.raises(NoQuorumError, match="no quorum"):
        async with embedded_cluster(Counter) as cluster:
            raise NoQuorumError("no quorum (raised by the test)", reachable=[], answered=[],
                                needed=2)  # fmt: skip
    assert cluster.nodes  # it had started
