#!/bin/sh
# The counter as 4 replica processes: `pbft keygen` writes the configuration and the keys,
# `pbft cluster --app examples.counter:Counter` runs one replica process per key, and a client
# in a process of its own adds to the counter. Run from the repository root with the
# virtualenv's commands first on PATH (`. .venv/bin/activate`); BASE_PORT moves the ports.
set -eu
dir=$(mktemp -d)
cluster=
trap '[ -z "$cluster" ] || { kill "$cluster"; wait "$cluster"; }; rm -rf "$dir"' EXIT

pbft keygen --replicas 4 --clients 1 --out "$dir" --base-port "${BASE_PORT:-7000}"
pbft cluster --dir "$dir" --app examples.counter:Counter > "$dir/cluster.out" &
cluster=$!
# --wait asks again until a quorum is healthy (exit 0), for at most 30 s (exit 1).
pbft status --config "$dir/cluster.toml" --wait 30 > /dev/null ||
  { echo "the cluster did not start:" >&2; cat "$dir/cluster.out" >&2; exit 1; }
python -m examples.counter_client "$dir/cluster.toml" "$dir/keys/client-0.key" "add 5" "add 37" get
pbft status --config "$dir/cluster.toml"
