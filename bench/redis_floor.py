"""The Redis floor: what Redis alone costs for the bench's rates, on the same server.

- Latency: a producer XADDs entries stamped with `time.monotonic_ns()` over
  `streams` streams at `rate` entries/s in total (the fan-out scenario's
  rate of deltas), and a consumer in another process reads them with one
  blocking `XREAD` over all the streams, as fast as it can. Latency is the
  consumer's receive time minus the stamp: one hop through Redis, which no
  delivery through relay (worker -> Redis -> web -> client) can beat.
- Throughput: one client sending `XADD`s one after the other, each waiting
  for its reply, for a few seconds: the round trips/s a single sequential
  writer gets, beside the worker's deltas/s.

redis-py on both sides, like the app. Run as `python -m bench.redis_floor
consume ...` for the consumer; the bench calls `latency()` and `throughput()`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

import redis

from bench.client import percentiles

ROOT = Path(__file__).resolve().parents[1]


def _streams(prefix: str, count: int) -> list[str]:
    return [f"bench:floor:{prefix}:{i}" for i in range(count)]


def consume(url: str, prefix: str, streams: int, expected: int, timeout: float) -> dict[str, Any]:
    """Read every entry of the streams until `expected` arrived or `timeout` passed."""
    client = redis.Redis.from_url(url, socket_timeout=timeout + 5)
    cursors = {name: "0-0" for name in _streams(prefix, streams)}
    latencies = array("q")
    deadline = time.monotonic() + timeout
    print("ready", flush=True)
    while len(latencies) < expected and time.monotonic() < deadline:
        answer = client.xread(cursors, count=1000, block=500)
        now = time.monotonic_ns()
        for name, entries in answer or []:
            for _, fields in entries:
                latencies.append(now - int(fields[b"t"]))
            cursors[name.decode()] = entries[-1][0]
    client.close()
    return {"received": len(latencies), "latency": percentiles(latencies)}


def latency(url: str, rate: float, streams: int, seconds: float) -> dict[str, Any]:
    """XADD -> XREAD latency at `rate` entries/s over `streams` streams, for `seconds`."""
    prefix = uuid.uuid4().hex[:8]
    names = _streams(prefix, streams)
    total = int(rate * seconds)
    consumer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.redis_floor",
            "consume",
            "--url",
            url,
            "--prefix",
            prefix,
            "--streams",
            str(streams),
            "--expected",
            str(total),
            "--timeout",
            str(seconds + 20),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if consumer.stdout.readline().strip() != "ready":
            raise RuntimeError("the floor consumer did not start")
        time.sleep(0.2)  # its first XREAD is blocking by now
        producer = redis.Redis.from_url(url)
        started = time.monotonic()
        for i in range(total):
            wait = started + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            producer.xadd(names[i % streams], {"t": time.monotonic_ns()})
        sent_seconds = time.monotonic() - started
        producer.close()
        out, _ = consumer.communicate(timeout=seconds + 60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(5)
        cleanup = redis.Redis.from_url(url)
        cleanup.delete(*names)
        cleanup.close()
    result = json.loads(out.strip().splitlines()[-1])
    result.update(sent=total, rate=total / sent_seconds, streams=streams)
    return result


def throughput(url: str, seconds: float) -> dict[str, Any]:
    """Sequential XADD round trips per second from one client."""
    client = redis.Redis.from_url(url)
    name = f"bench:floor:{uuid.uuid4().hex[:8]}:throughput"
    count, started = 0, time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        for _ in range(100):
            client.xadd(name, {"t": time.monotonic_ns()})
        count += 100
    elapsed = time.monotonic() - started
    client.delete(name)
    client.close()
    return {"xadds": count, "per_second": count / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["consume"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args()
    print(
        json.dumps(consume(args.url, args.prefix, args.streams, args.expected, args.timeout)),
        flush=True,
    )


if __name__ == "__main__":
    main()
