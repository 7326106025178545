"""A client of a running counter cluster, in a process of its own:

    python -m examples.counter_client CONFIG KEY OPERATION...

CONFIG is the cluster's `cluster.toml` and KEY a client key file, both as `pbft keygen` wrote
them (`DIR/cluster.toml`, `DIR/keys/client-0.key`); each OPERATION (`"add 5"`, `get`) is
ordered in turn and its result printed. Exit code 2 with one line if a file cannot be used, 1
if the cluster gives no result within 10 s.
"""

import sys

import trio

from pbft.config import ConfigError, load
from pbft.ed25519 import KeyFileError, read_key_file
from pbft.runtime import ClientError, connect


async def run(config_path: str, key_path: str, operations: list[str]) -> None:
    config = load(config_path)  # ConfigError naming the file and the field
    signer = read_key_file(key_path)  # KeyFileError: missing, not mode 0600, not a key
    # Fail after 10 s instead of the default 30 s if no f + 1 replicas answer alike.
    async with connect(config, signer, timeout_s=10.0) as client:
        for operation in operations:
            result = await client.submit(operation.encode())
            print(f"{operation}: {result.decode()}")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        trio.run(run, argv[0], argv[1], argv[2:])
    except (ConfigError, KeyFileError, OSError) as error:
        print(f"counter_client: {error}", file=sys.stderr)
        return 2
    except ClientError as error:  # no quorum in time (outcome unknown), or refused
        print(f"counter_client: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
