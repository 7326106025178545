"""The counter replicated by 4 replicas inside this trio program, and a client using it."""

import trio

from examples.counter import Counter
from pbft.runtime import embedded_cluster


async def main() -> None:
    # 4 replicas on free ports of 127.0.0.1, each with its own Counter; leaving stops them.
    async with embedded_cluster(Counter, replicas=4) as cluster:
        async with cluster.connect() as client:
            for amount in (1, 2, 39):
                total = await client.submit(b"add %d" % amount)  # ordered (f + 1 equal replies)
                print(f"add {amount}: total {total.decode()}")
            print("read-only get:", (await client.query(b"get")).decode())  # 2f + 1 replies
            print("bad input is a result:", (await client.submit(b"mul 2")).decode())


if __name__ == "__main__":
    trio.run(main)
