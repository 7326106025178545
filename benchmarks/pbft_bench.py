"""`pbft bench` as a benchmark script: the PBFT paper's micro-benchmarks (0/0, 0/4, 4/0;
ordered and read-only) on 4 replica processes over loopback TLS with durable storage, against
an unreplicated server doing the same signature check. See `pbft/runtime/bench.py`.

    python benchmarks/pbft_bench.py [--duration S] [--clients N] [--only ROWS]

Prints a table, then one JSON object (with `ordered_0_0_requests_per_s` and
`latency_ms_p50_single_client`) as its last line.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pbft.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
