"""A Python load generator, for machines without wrk: C connections for S seconds.

Run in its own process (as wrk would be) so that the server's event loop is not
the client's: `python -m bench.loadgen URL --method POST --body '{...}'
--connections 16 --seconds 8`. Prints one JSON line: requests, rps, p99_ms, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx


async def _load(
    url: str, method: str, body: str | None, connections: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    headers = {"content-type": "application/json"} if body else {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        start = time.perf_counter()
        end = start + seconds

        async def connection() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                sent = time.perf_counter()
                response = await http.request(method, url, content=body, headers=headers)
                latencies.append(time.perf_counter() - sent)
                if response.status_code >= 300:
                    errors += 1

        await asyncio.gather(*(connection() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0.0
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p99_ms": p99 * 1000,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    result = asyncio.run(_load(args.url, args.method, args.body, args.connections, args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
