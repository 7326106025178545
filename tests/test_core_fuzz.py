"""Bad input never crashes a replica: hypothesis feeds arbitrary well-typed messages (every
type, any field values) to replicas in several states, and every one is either used or dropped
with a counted reason; the replica's invariants hold throughout."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbft.app import KeyValueStore
from pbft.core import Replica
from pbft.ed25519 import Ed25519Verifier

from .corekit import SIGNERS, commit_batch, make_config, pre_prepare, request
from .test_codec import messages


def _replica(state: str) -> Replica:
    config = make_config(checkpoint_interval=2, log_window=4, request_timeout_ms=100)
    replica = Replica(config, 1, SIGNERS[1], Ed25519Verifier(), KeyValueStore())
    if state in ("executed", "view_change"):
        for s in (1, 2, 3):
            commit_batch(replica, pre_prepare(s, requests=(request(s),)))
    if state == "view_change":
        replica.receive(request(9, key="late"))
        replica.tick(100)
        assert not replica.view_active
    return replica


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.sampled_from(["fresh", "executed", "view_change"]),
       inputs=st.lists(messages, min_size=1, max_size=8))
def test_arbitrary_messages_never_raise(state, inputs):
    replica = _replica(state)
    for message in inputs:
        replica.receive(message)
        replica.tick(replica.now_ms + 7)
        ready = replica.ready()
        replica.advance()
        assert ready.status.low_watermark <= ready.status.high_watermark


def _signed(message):
    """The message with its sender in range and a valid signature, so it gets past the
    signature checks and exercises the rules behind them."""
    from dataclasses import fields, replace

    from pbft.codec import signing_payload

    from .corekit import CLIENT

    names = {f.name for f in fields(message)}
    if "signature" not in names:
        return message
    if "replica" in names:
        message = replace(message, replica=message.replica % 4)
        signer = SIGNERS[message.replica]
    elif "client" in names:
        message = replace(message, client=CLIENT.public_key)
        signer = CLIENT
    else:
        return message
    if "sequence" in names:
        message = replace(message, sequence=message.sequence % 12)
    if "view" in names:
        message = replace(message, view=message.view % 3)
    return replace(message, signature=signer.sign(signing_payload(message)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.sampled_from(["fresh", "executed", "view_change"]),
       inputs=st.lists(messages.map(_signed), min_size=1, max_size=8))
def test_arbitrary_validly_signed_messages_never_raise(state, inputs):
    replica = _replica(state)
    for message in inputs:
        replica.receive(message)
        replica.tick(replica.now_ms + 7)
        replica.ready()
        replica.advance()
