"""The one vocabulary of reasons for dropping what arrives (`Replica.dropped`,
`ClientSession.dropped`, the node's door checks), shared by the core, the runtime's logs and
metrics, and the simulator. `tests/test_drop_reasons.py` checks that the code uses exactly these.

`SUSPICIOUS` are the reasons only a faulty (or misconfigured) peer or client causes: a correct
one never sends such a message, whatever the network does. The runtime logs them as warnings;
the others (late, duplicated, already known, over a bound) are normal under loss, retransmission
and view changes, and are logged at debug level.
"""

from __future__ import annotations

#: Reason -> what happened.
REASONS: dict[str, str] = {
    # Signatures and identities
    "bad_signature": "a replica's signature does not verify",
    "bad_request_signature": "a client's request signature does not verify",
    "unknown_replica": "names a replica that is not in the configuration",
    "unexpected_message_type": "a message type this receiver never takes",
    "sender_mismatch": "a replica connection sent a message naming another replica as sender",
    "client_sent_protocol_message": "a client connection sent something other than a REQUEST",
    "bad_route_registration": "a route registration naming another connection than its own",
    # Requests (N1, N2', N8, N8', R1')
    "old_request": "older than the client's last executed request",
    "duplicate_request": "already pending or proposed",
    "superseded_request": "the client sent a newer request (N8: one per client)",
    "request_too_large": "longer than operation_bytes_max",
    "client_not_admitted": "the client is not listed, or the application does not admit it",
    "client_table_full": "a new client while the reply cache is full",
    "client_not_admitted_at_execution": "not executed: the application no longer admits it",
    "client_table_full_at_execution": "not executed: a new client and the reply cache is full",
    "pending_requests_full": "waiting requests are at their count or byte bound",
    "deferred_reads_full": "reads waiting for fresh state are at their bound (R1')",
    # PRE-PREPAREs (N3, N2', D1)
    "wrong_view": "not of the view this replica works in",
    "pre_prepare_not_from_primary": "a PRE-PREPARE from a replica that is not the primary",
    "pre_prepare_to_primary": "a PRE-PREPARE sent to the primary itself",
    "conflicting_pre_prepare": "another digest for a (view, sequence) already accepted",
    "duplicate_pre_prepare": "the PRE-PREPARE is already accepted",
    "bad_batch_size": "an empty batch, or more requests than batch_size_max",
    "batch_too_large": "a batch over batch_bytes_max (N2')",
    "batch_digest_mismatch": "the digest does not match the batch",
    "bad_batch_request": "a read-only or repeated request inside a batch",
    "batch_client_not_admitted": "a batch carries a client that is not listed (N8')",
    "batch_timestamp_skew": "the batch timestamp is too far from the receiver's clock (D1)",
    "batch_timestamp_backwards": "the batch timestamp goes back against its neighbours (D1)",
    # Votes (N4, N5, N10)
    "prepare_from_primary": "a PREPARE from the primary of its view",
    "duplicate_vote": "the sender's vote is already counted",
    "mismatched_vote": "a vote for another digest than the accepted PRE-PREPARE's",
    "below_low_watermark": "at or below the stable checkpoint: already garbage",
    "above_high_watermark": "beyond the log window",
    "stash_full": "a future message over the sender's stash bound (V3')",
    "useless_future_message": "a future message the replica could never use (V3')",
    # Checkpoints and state transfer (C1, C2, S1)
    "checkpoint_off_interval": "a CHECKPOINT at a sequence that is not a checkpoint",
    "stale_checkpoint": "lower than the sender's CHECKPOINT already kept above the window",
    "diverged_from_checkpoint": "this replica's own state differs from a proven checkpoint",
    "no_such_snapshot": "asked for a snapshot this replica does not hold",
    "no_such_chunk": "asked for a chunk beyond the snapshot",
    "fetch_state_rate_limited": "FETCH-STATE beyond the requester's allowance (S1'')",
    "unexpected_state_chunk": "a STATE-CHUNK of no fetch in progress",
    "duplicate_state_chunk": "a STATE-CHUNK already received",
    "bad_state_chunk": "a STATE-CHUNK that does not verify against the proven digest (S1')",
    "snapshot_too_large": "the snapshot announced exceeds snapshot_bytes_max",
    "state_fetch_timeout": "a chunk requested did not arrive in time",
    "fetch_log_too_soon": "a catch-up FETCH-LOG before the requester's period is over (S1'')",
    "fetch_batch_rate_limited": "batches by digest beyond the requester's allowance (S1'')",
    "bad_commit_certificate": "a logged batch whose COMMITs do not prove it committed",
    # View changes (V1-V5)
    "old_view_change": "a VIEW-CHANGE for a view already passed",
    "duplicate_view_change": "the sender's VIEW-CHANGE for that view is already held",
    "bad_prepared_certificate": "a prepared certificate in a VIEW-CHANGE that does not verify",
    "bad_checkpoint_proof": "a checkpoint proof in a VIEW-CHANGE that does not verify",
    "old_new_view": "a NEW-VIEW for a view already installed or passed",
    "new_view_not_from_primary": "a NEW-VIEW not from that view's primary",
    "bad_new_view": "a NEW-VIEW whose PRE-PREPAREs are not what its VIEW-CHANGEs give (V3)",
    "new_view_resend_too_soon": "a NEW-VIEW resend asked for again within the interval",
    "primary_slow_to_propose": "(an event, not a drop) this backup suspected the primary (V1'')",
    # Clients
    "misaddressed_reply": "a reply for another client or from an unknown replica",
    "stale_reply": "a reply to no outstanding request",
}

#: Only a faulty peer or client causes these (see the module docstring).
SUSPICIOUS: frozenset[str] = frozenset({
    "bad_signature", "bad_request_signature", "unknown_replica", "unexpected_message_type",
    "sender_mismatch", "client_sent_protocol_message", "bad_route_registration",
    "pre_prepare_not_from_primary",
    "pre_prepare_to_primary", "conflicting_pre_prepare", "bad_batch_size", "batch_too_large",
    "batch_digest_mismatch", "bad_batch_request", "batch_client_not_admitted",
    "batch_timestamp_skew", "prepare_from_primary", "mismatched_vote", "bad_state_chunk",
    "snapshot_too_large", "bad_commit_certificate", "bad_prepared_certificate",
    "bad_checkpoint_proof", "new_view_not_from_primary", "bad_new_view",
    "diverged_from_checkpoint",
})
