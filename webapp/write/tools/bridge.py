"""One asyncio loop on its own OS thread, which the worker's greenlets wait on without blocking.

The worker runs under gevent, monkey-patched; the `mcp` SDK (and an app's
`async def` tools) run on asyncio. The two live together like this:

- **One asyncio loop, on one real OS thread**, started with the original
  `_thread.start_new_thread` (`gevent.monkey.get_original`): a patched
  `threading.Thread` would be a greenlet, and the loop would block the hub
  whenever it waits. The loop is created inside that thread, so in a
  patched process its selector (gevent's, `selectors` is patched) belongs
  to that thread's own gevent hub: when asyncio waits for sockets, that hub
  waits, and what asyncio or anyio hand to "threads" of their own (name
  lookups in the default executor, `anyio.to_thread`), which the patched
  `threading` makes greenlets, run on that same hub while asyncio waits. In
  an unpatched process (tests, `flask` commands) it is an ordinary loop on
  an ordinary thread. Sockets the loop opens are gevent's objects in a
  patched process, but in non-blocking mode, as asyncio sets them, they
  behave as the standard ones: they never wait on a hub.
- **Work goes in** with `asyncio.run_coroutine_threadsafe`: a
  `concurrent.futures.Future` for each coroutine.
- **A greenlet waits** on that future through its hub: the future's
  done-callback, run on the loop's thread, schedules the setting of a
  `gevent.event.AsyncResult` on the waiting hub with
  `hub.loop.run_callback_threadsafe` (the loop's way in from another
  thread: it queues the callback and wakes the hub through its async
  watcher, libev's `ev_async`). So the greenlet waits cooperatively (other
  answers go on) and is woken without polling. A greenlet interrupted while
  it waits (a cancel, a hand-back) cancels the coroutine on its way out.

- **Stopping**: `close()` cancels the loop's tasks, closes async
  generators and joins the default executor's threads while the loop's
  thread (and so its hub) still runs, then ends the thread. A process that
  exits without calling it gets the same from a hook at interpreter exit:
  the greenlet-threads of a stopped hub could never be joined, and the
  exit would hang.

One loop serves every MCP server and every async tool of the process:
calls are short, concurrent ones interleave on it, and one thread is what
a worker can afford next to its greenlets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import gevent
import gevent.event
from gevent import monkey

from webapp.exceptions import TimedOut

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long closing waits for the loop's thread to finish its tasks' cleanup.
CLOSE_SECONDS = 5.0


class AsyncBridge:
    """The worker's asyncio loop on its own OS thread (module docstring)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()

    def start(self) -> AsyncBridge:
        start_new_thread = monkey.get_original("_thread", "start_new_thread")
        start_new_thread(self._run, ())
        wait(self._ready, None)
        # A process that exits without close() must not hang: at exit, the
        # interpreter joins the default executor's threads, which in a patched
        # process are greenlets of the loop thread's hub (see _run). This is
        # the hook concurrent.futures itself uses to join its threads at exit,
        # run before it (last registered, first run); private, so pinned by
        # test_tool_bridge.py's exit test.
        threading._register_atexit(self.close)
        return self

    def _run(self) -> None:
        # Made here, not by the caller: its selector must be this thread's (module docstring).
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        loop.call_soon(self._ready.set_result, None)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            # The default executor's threads (name lookups) are greenlets of this
            # thread's hub in a patched process: joined now, while that hub runs,
            # or the interpreter's exit would wait on them forever.
            loop.run_until_complete(loop.shutdown_default_executor())
        except Exception:
            log.exception("the asyncio thread failed while stopping")
        finally:
            loop.close()
            self._stopped.set_result(None)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coroutine` on the loop; its future is waited on with `wait`."""
        if self._loop is None or self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the asyncio thread is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run `coroutine` on the loop and wait for its result; TimedOut after `timeout` s."""
        return wait(self.submit(coroutine), timeout)

    def running(self) -> bool:
        """Whether the loop's thread is up (started, and not stopped yet)."""
        return self._loop is not None and not self._stopped.done()

    def close(self) -> None:
        """Cancel what runs on the loop, stop it, and wait (bounded) for its thread to end."""
        if self._loop is None or self._stopped.done():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        try:
            wait(self._stopped, CLOSE_SECONDS)
        except TimedOut:
            log.warning("the asyncio thread did not stop within %.0f s", CLOSE_SECONDS)


def wait(future: concurrent.futures.Future[T], timeout: float | None) -> T:
    """The future's result, waited for cooperatively (module docstring); TimedOut after `timeout`.

    The coroutine behind `future` is cancelled when the wait ends without
    its result: a timeout, or an interrupt raised into the waiting greenlet.
    """
    loop = gevent.get_hub().loop
    done = gevent.event.AsyncResult()
    # The hub's loop runs only while a referenced watcher is active, and its
    # thread-safe wake-up is not one: this idle one keeps it waiting for us.
    keepalive = loop.async_()
    keepalive.start(_nothing)
    # Run on the loop's thread (or here, when it is done already).
    future.add_done_callback(lambda _: loop.run_callback_threadsafe(done.set, None))
    try:
        # `wait`, not `get`: it returns at the timeout, so an outer gevent.Timeout
        # raised into this greenlet passes through as itself.
        done.wait(timeout)
        if not done.ready():
            raise TimedOut
    finally:
        keepalive.close()
        if not future.done():
            future.cancel()
    return future.result(timeout=0)


def _nothing() -> None:
    pass
