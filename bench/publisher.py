"""The Nchan publisher: the bench model server's part when the system under test is Nchan.

It runs as `python -m bench.publisher --port <nginx port>`, reads one JSON
line on stdin, `{"channels": [...], "count": n, "rate": r}`, publishes, and
answers with one JSON line when every channel is done. Each channel gets
`count` messages at `rate` per second by `POST /pub/<channel>` (Nchan's HTTP
publisher location, bench/nchan.py), then `end chunks=<count>`, which stands
for relay's `end` event.

Message i's body is `⟨i=<i> t=<ns>⟩`, `ns` being `time.monotonic_ns()` just
before the request is written: the stamp the bench model server puts in
each delta (model_server.py), read by the same load client, so a delivery's
latency is measured the same way for both systems.

Deliberate choices:
- One keep-alive connection per channel, one request at a time on it, as
  relay's worker reads one model stream per answer.
- Messages are scheduled on absolute times (start + i / rate), and the
  channels' starts are spread over one period: relay's answers start as
  their prompts are posted, not all in the same millisecond.
- asyncio (on uvloop when installed) and hand-written HTTP, like the model
  server: 2,000 requests/s must leave the load's core mostly free.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from bench.client import NCHAN_END, exchange, run


async def publish_channel(
    host: str, port: int, channel: str, count: int, rate: float, start: float
) -> dict[str, int]:
    """`count` stamped messages on one channel, then its end; what was refused or failed."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST /pub/{channel} HTTP/1.1\r\nHost: {host}\r\nContent-Length: ".encode()
    refused = 0
    try:
        for i in range(count + 1):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if i < count:
                body = f"⟨i={i} t={time.monotonic_ns()}⟩".encode()
            else:
                body = NCHAN_END + str(count).encode()
            status, _, _ = await exchange(
                reader, writer, b"%s%d\r\n\r\n%s" % (head, len(body), body)
            )
            # 201: delivered to subscribers; 202: stored, none subscribed yet.
            refused += status not in (201, 202)
    finally:
        writer.close()
    return {"messages": count + 1, "refused": refused}


async def publish(host: str, port: int, channels: list[str], count: int, rate: float) -> dict:
    started = time.monotonic()
    first = started + 0.05
    results = await asyncio.gather(
        *(
            publish_channel(host, port, channel, count, rate, first + k / len(channels) / rate)
            for k, channel in enumerate(channels)
        ),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    done: list[dict[str, Any]] = [r for r in results if not isinstance(r, BaseException)]
    return {
        "channels": len(channels),
        "published": sum(r["messages"] for r in done),
        "refused": sum(r["refused"] for r in done),
        "failed_channels": len(failed),
        "first_failure": repr(failed[0]) if failed else None,
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    order = json.loads(sys.stdin.readline())

    async def go() -> None:
        answer = await publish(
            args.host, args.port, order["channels"], order["count"], order["rate"]
        )
        print(json.dumps(answer), flush=True)

    run(go())


if __name__ == "__main__":
    main()
