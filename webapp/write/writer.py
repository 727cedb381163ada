"""The only code that writes session streams: fenced appends as Lua scripts.

Each write is one script run on the session's keys (one Cluster slot), so the
checks and the write are atomic:

- Fencing: a write goes through only while the session's `active` hash still
  names this message and attempt. A worker whose job was taken over (a
  higher attempt) or already finished writes nothing more (API.md, Events).
- Exactly once: each write of an attempt carries a sequence number, kept in
  the `active` hash. A write retried after its reply was lost (a dropped
  connection, a Redis restart) is recognised and not appended twice.
- Cancellation: the reply tells the writer whether a cancel was requested,
  so checking costs no extra round trip.
- Retention: the final write (end or error) releases the session, trims the
  stream to STREAM_MAXLEN and sets its TTL. The `meta` hash records the last
  id written and the `floor` (every entry at or below it is gone), which is
  how readers tell an old cursor (reset) from a current one, and which
  message and attempt finished last, so a retried final write is recognised.
- Notification: every append publishes a `keys.Notice` on one channel,
  which the hub of each web process follows (see hub.py).

The scripts are lua/append.lua and lua/finish.lua; keys.py names every key
and field they touch.

Redis errors are retried with backoff for up to `retry_seconds`, so a Redis
restart pauses an answer instead of failing it.

In the worker, all generations of the process share one `WriteBatcher`: one
greenlet sends whatever writes are waiting as one pipeline, so many answers
cost one round trip, and one connection, at a time (issue 5). On a single
server that connection is the batcher's own, written and read directly
(see `WriteBatcher._on_connection` for why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gevent
import redis
from gevent.event import AsyncResult, Event

from webapp.storage import keys
from webapp.storage.keys import Script

log = logging.getLogger(__name__)

RETRY_START_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Written:
    """Outcome of one write: the new entry id ('' when fenced off)."""

    entry_id: str
    cancel_requested: bool

    @classmethod
    def from_reply(cls, reply: list[Any]) -> Written:
        """A write script's reply: {entry id or nil when fenced off, '1' if cancel was asked}."""
        entry_id, cancel = reply
        return cls(entry_id or "", cancel == "1")

    @property
    def fenced(self) -> bool:
        return not self.entry_id


def retried(call: Callable[[], T], seconds: float, what: str, ids: tuple[str, str]) -> T:
    """`call()`, called again with backoff while Redis fails, for up to `seconds`.

    Only for calls that are safe to make twice (a stream write carries its
    sequence number; journal.py's scripts are first-write-wins). `what` and
    `ids` (session, message) name it in the warning each retry logs.
    """
    deadline = time.monotonic() + seconds
    backoff = RETRY_START_SECONDS
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() + backoff > deadline:
                raise
            log.warning(
                "%s failed, retrying in %.1fs session=%s message=%s: %s",
                what,
                backoff,
                *ids,
                exc,
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, RETRY_MAX_SECONDS)


class WriteBatcher:
    """Sends the stream writes of every generation in this process as pipelines.

    No timer: a write waits only for the pipeline already in flight, and all
    writes that arrived meanwhile go out together in the next one.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        # A cluster routes each write to its slot's node: its pipeline does that.
        pool = getattr(client, "connection_pool", None)
        self._connection: redis.connection.AbstractConnection | None = (
            pool.connection_class(**pool.connection_kwargs) if pool is not None else None
        )
        self._pending: list[tuple[Script, list[Any], AsyncResult]] = []
        self._wakeup = Event()
        self._greenlet: gevent.Greenlet | None = None

    def run_script(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        return self.submit(script, keys, args).get()

    def submit(
        self, script: Script, keys: list[str], args: list[Any], *, after_next_wait: bool = False
    ) -> AsyncResult:
        """Queue a script run for the next pipeline; its reply arrives in the result.

        `after_next_wait`: queue it only once the caller has waited (a timer of
        0 s fires with the waits started before the loop's next turn), so what
        the caller sends before it first waits goes out first.
        """
        result = AsyncResult()
        entry = (script, [*keys, *args], result)
        if after_next_wait:
            gevent.spawn_later(0, self._queue, entry)
        else:
            self._queue(entry)
        return result

    def _queue(self, entry: tuple[Script, list[Any], AsyncResult]) -> None:
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._send_forever)
        self._pending.append(entry)
        self._wakeup.set()

    def _send_forever(self) -> None:
        while True:
            self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                self._send(batch)

    def _send(self, batch: list[tuple[Script, list[Any], AsyncResult]]) -> None:
        try:
            results = self._pipeline(batch)
            if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
                # Redis restarted and forgot our scripts; nothing ran, so send again.
                for script in {id(s): s for s, _, _ in batch}.values():
                    script.load(self._client)
                results = self._pipeline(batch)
        except Exception as exc:  # the connection failed: every writer retries on its own
            results = [exc] * len(batch)
        for (_, _, result), outcome in zip(batch, results, strict=True):
            if isinstance(outcome, Exception):
                result.set_exception(outcome)
            else:
                result.set(outcome)

    def _pipeline(self, batch: list[tuple[Script, list[Any], AsyncResult]]) -> list[Any]:
        if self._connection is not None:
            return self._on_connection(self._connection, batch)
        with self._client.pipeline(transaction=False) as pipe:
            for script, keys_and_args, _ in batch:
                # The raw command, which a cluster pipeline routes by its keys
                # (it refuses the `evalsha` method by name).
                pipe.execute_command("EVALSHA", script.sha, 3, *keys_and_args)
            return pipe.execute(raise_on_error=False)

    @staticmethod
    def _on_connection(
        connection: redis.connection.AbstractConnection,
        batch: list[tuple[Script, list[Any], AsyncResult]],
    ) -> list[Any]:
        """The batch as one write and its replies, in order, on the batcher's own connection.

        What a pipeline sends, without its bookkeeping: a one-write batch cost
        about 83 µs of CPU through redis-py's pipeline (a pool checkout that
        polls the socket through gevent's hub, retry and event wrappers) and
        25 µs this way, send and read included. Under issue 18's fan-out every
        delta is a batch of one or two.
        """
        commands = [
            ("EVALSHA", script.sha, 3, *keys_and_args) for script, keys_and_args, _ in batch
        ]
        replies: list[Any] = []
        try:
            connection.send_packed_command(connection.pack_commands(commands))
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:  # this write's own error (NOSCRIPT...)
                    replies.append(exc)
        except BaseException:
            # Replies may be left unread: the next batch must not take them for its own.
            connection.disconnect()
            raise
        return replies


class StreamWriter:
    """Writes one generation attempt's events, fenced by message id and attempt."""

    def __init__(
        self,
        client: redis.Redis,
        session_id: str,
        message_id: str,
        attempt: int,
        *,
        stream_ttl_seconds: int,
        maxlen: int,
        retry_seconds: float = 30.0,
        batcher: WriteBatcher | None = None,
        join_pieces: bool = True,
    ) -> None:
        self._client = client
        self._keys = keys.session_keys(session_id)
        self._session_id = session_id
        self._fence = (message_id, str(attempt))
        self._seq = 0
        self._stream_ttl = stream_ttl_seconds
        self._maxlen = maxlen
        self._retry_seconds = retry_seconds
        self._batcher = batcher
        self._join_pieces = join_pieces
        # The write of the last `send`, until its outcome is read: its args and
        # the reply on its way, or (with no batcher) the outcome itself.
        self._sent: tuple[list[Any], AsyncResult] | Written | None = None

    def _args(self, event: str, data: str) -> list[Any]:
        self._seq += 1
        return [*self._fence, self._seq, event, data, keys.EVENTS_CHANNEL, self._session_id]

    def _run(self, script: Script, args: list[Any]) -> Written:
        """Run a write script, retrying through Redis outages; the seq makes retries safe."""
        if self._sent is not None:
            self.sent_written()  # the stream keeps the order of the writes

        def write() -> Written:
            if self._batcher is not None:
                return Written.from_reply(self._batcher.run_script(script, self._keys, args))
            return Written.from_reply(script(self._client, self._keys, args))

        ids = (self._session_id, self._fence[0])
        return retried(write, self._retry_seconds, "stream write", ids)

    def append(self, event: str, data: str) -> Written:
        return self._run(keys.APPEND, self._args(event, data))

    def send(self, event: str, data: str) -> None:
        """Append without waiting for the reply; `sent_written()` tells the outcome.

        The worker sends `start` this way and asks the model meanwhile, so the
        two round trips overlap. The model's request goes out first: sent
        first, `start` woke Redis (and through it the web) ahead of the request
        on a shared core, 1-2 ms more to the first token. Every later write
        waits for this one first.
        """
        args = self._args(event, data)
        if self._batcher is None:
            self._sent = self._run(keys.APPEND, args)  # no pipeline to put it on: write now
        else:
            reply = self._batcher.submit(keys.APPEND, self._keys, args, after_next_wait=True)
            self._sent = (args, reply)

    @property
    def joins_pieces(self) -> bool:
        """Whether pieces that come together may be joined (WORKER_JOIN_PIECES): `send_now` then."""
        return self._join_pieces and self._batcher is not None

    def send_now(self, event: str, data: str) -> AsyncResult:
        """Append without waiting, queued for the batcher's next pipeline; its reply on its way.

        For a piece of the answer (piece_writes.py): nothing is sent before
        it. Its outcome is read with `sent_written()`, before any other write.
        """
        assert self._batcher is not None and self._sent is None
        args = self._args(event, data)
        reply = self._batcher.submit(keys.APPEND, self._keys, args)
        self._sent = (args, reply)
        return reply

    def sent_written(self) -> Written:
        """The outcome of the last `send`, retrying it as `append` would if it failed."""
        sent, self._sent = self._sent, None
        assert sent is not None, "nothing was sent"
        if isinstance(sent, Written):
            return sent
        args, reply = sent
        try:
            return Written.from_reply(reply.get())
        except (redis.ConnectionError, redis.TimeoutError):
            return self._run(keys.APPEND, args)  # again, with backoff: its seq makes it safe

    def finish(self, event: str, data: str) -> Written:
        """Write the final event, release the session and apply retention."""
        meta_ttl = self._stream_ttl * keys.META_TTL_FACTOR
        args = [*self._args(event, data), self._stream_ttl, self._maxlen, meta_ttl]
        return self._run(keys.FINISH, args)
