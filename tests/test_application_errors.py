"""A1: an application that raises (issue 12, item 6): one request must not stop the service.

The core turns an exception from `execute` or `query` into a deterministic error result
(`pbft.app.application_error_result`), the same on every correct replica, counts it and goes
on; a restarted replica replays the same request to the same result.
"""

from __future__ import annotations

from pbft.app import (
    ExecutionContext,
    KeyValueStore,
    application_error_result,
    decode_application_error,
    kv_get,
    kv_put,
)

from .corekit import random_order_cluster

POISON = b"poison"


class RaisingStore(KeyValueStore):
    """The key-value store, but `execute` and `query` of POISON raise, and `admits` raises for
    one key."""

    banned: bytes | None = None

    def execute(self, operation: bytes, context: ExecutionContext) -> bytes:
        if operation == POISON:
            raise ValueError(f"poison at {id(self):#x}")  # the message differs per replica
        return super().execute(operation, context)

    def query(self, operation: bytes, client: bytes) -> bytes:
        if operation == POISON:
            raise ZeroDivisionError("query")
        return super().query(operation, client)


def test_application_error_result_round_trips_and_names_only_the_type():
    result = application_error_result(ValueError("at 0x7f..."))
    assert decode_application_error(result) == "ValueError"
    assert result == application_error_result(ValueError("another message"))
    assert decode_application_error(kv_put("k", b"v")) is None
    assert decode_application_error(b"") is None
    assert decode_application_error(result[:-1]) is None


def test_a_raising_execute_gives_every_replica_the_same_error_result_and_the_service_goes_on():
    cluster = random_order_cluster(app_factory=RaisingStore)
    client = cluster.add_client("a")
    cluster.submit(client, POISON)
    cluster.deliver_all()
    [poisoned] = client.results
    assert decode_application_error(poisoned.result) == "ValueError"
    for replica in cluster.replicas:
        assert replica.application_errors == {"ValueError": 1}
    digests = {batch.requests[0].result for r in cluster.executed for batch in r
               if batch.requests}
    assert digests == {application_error_result(ValueError())}
    cluster.submit(client, kv_put("k", b"after"))
    cluster.deliver_all()
    assert client.results[-1].result == KeyValueStore().execute(
        kv_put("k", b"after"), ExecutionContext(2, client.client, 0))
    assert len({r.state_digest() for r in cluster.replicas}) == 1


def test_a_restarted_replica_replays_the_raising_request_to_the_same_result():
    cluster = random_order_cluster(app_factory=RaisingStore,
                                   config_overrides={"checkpoint_interval": 4, "log_window": 8})
    client = cluster.add_client("a")
    cluster.submit(client, POISON)
    cluster.deliver_all()
    cluster.crash(2)
    restarted = cluster.restart(2)
    cluster.run_for(2_000)
    for i in range(5):
        cluster.submit(client, kv_put("k", b"%d" % i))
        cluster.deliver_all()
    assert restarted is cluster.replicas[2]
    # The engine compares each re-execution with the first: same batch, same results.
    assert cluster.reexecutions >= 1 and cluster.reexecuted_differently == []
    assert restarted.last_executed == cluster.replicas[0].last_executed
    assert restarted.state_digest() == cluster.replicas[0].state_digest()


def test_a_raising_query_answers_read_only_with_the_error_result():
    cluster = random_order_cluster(app_factory=RaisingStore)
    client = cluster.add_client("a")
    cluster.submit(client, POISON, read_only=True)
    cluster.deliver_all()
    [result] = client.results
    assert result.read_only
    assert decode_application_error(result.result) == "ZeroDivisionError"
    cluster.submit(client, kv_get("k"), read_only=True)
    cluster.deliver_all()
    assert client.results[-1].read_only


class RaisingAdmission(KeyValueStore):
    def admits(self, client: bytes) -> bool:
        raise KeyError(client)


def test_an_admits_hook_that_raises_refuses_the_client_and_does_not_stop_the_replica():
    """N8': a client's key must not stop a replica through the application's hook."""
    cluster = random_order_cluster(app_factory=RaisingAdmission)
    client = cluster.add_client("a")
    cluster.submit(client, kv_put("k", b"v"))
    cluster.deliver_all()
    assert client.results == []
    for replica in cluster.replicas:
        assert replica.dropped["client_not_admitted"] >= 1
        assert replica.application_errors["KeyError"] >= 1
