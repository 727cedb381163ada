"""Run relay's JavaScript client (clients/js) under Node against real relay processes.

`install_harness()` installs, once per lockfile (ai_sdk.install): clients/js's
own devDependencies (esbuild, for the size check) and clients/js/test's
harness (the AI SDK, React and esbuild, for the browser page). Tests take it
through a fixture of their own and skip, with the reason, without node.

`Follower` runs clients/js/test/follow.mjs, which follows one session with
the client (and may send a prompt), as a child process: its progress lines
can be waited on (`wait_for_line`) while the test breaks things, and
`result()` gives its report. `check_exactly_once` compares that report with
the session's stream as relay stored it.
"""

from __future__ import annotations

import json
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from tests.support.ai_sdk import install
from tests.support.client import Event
from tests.support.processes import ROOT

JS_CLIENT = ROOT / "clients" / "js"
HARNESS = JS_CLIENT / "test"
RUN_TIMEOUT_SECONDS = 90


def install_harness() -> None:
    """`npm ci` in clients/js and clients/js/test (raises NodeMissing without node)."""
    install(JS_CLIENT)
    install(HARNESS)


def node(script: str, *args: str, timeout: float = RUN_TIMEOUT_SECONDS) -> str:
    """Run a script of clients/js/test to its end; its stdout (fails with its stderr)."""
    result = subprocess.run(
        ["node", str(HARNESS / script), *args],
        cwd=JS_CLIENT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Follower:
    """follow.mjs as a child process; `options` as its header lists them."""

    def __init__(self, base_url: str, **options: Any) -> None:
        args = json.dumps({"baseUrl": base_url, **options})
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["node", str(HARNESS / "follow.mjs"), args],
            cwd=JS_CLIENT,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for_line(self, kind: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        """The first line of `kind` (whose fields match `match`), waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if line["type"] == kind and match.items() <= line.items():
                return line
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(line)
            if line["type"] == kind and match.items() <= line.items():
                return line
            if line["type"] == "result":
                break
        self.stop()
        raise AssertionError(
            f"no {kind} line {match} within {timeout}s; last lines {self.seen[-5:]}\n{self.errors}"
        )

    def result(self, timeout: float = RUN_TIMEOUT_SECONDS) -> FollowResult:
        try:
            line = self.wait_for_line("result", timeout)
        finally:
            self.stop()
        texts = [seen for seen in self.seen if seen["type"] == "text"]
        return FollowResult(line, texts)

    def stop(self) -> None:
        if self.stderr.closed:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.seek(0)
        self.errors = self.stderr.read().decode(errors="replace")[-3000:]
        self.stderr.close()


@dataclass
class FollowResult:
    """follow.mjs's report, and its text lines: every text of an answer it showed, in order."""

    report: dict[str, Any]
    text_lines: list[dict[str, Any]]

    def texts(self, message_id: str) -> list[str]:
        return [line["text"] for line in self.text_lines if line["id"] == message_id]

    @property
    def message(self) -> dict[str, Any]:
        assert self.report["error"] is None, self.report["error"]
        return self.report["message"]

    @property
    def stats(self) -> dict[str, Any]:
        return self.report["stats"]

    def applied(self, message_id: str) -> list[dict[str, Any]]:
        """The answer's events the client applied one by one, after its last snapshot of it."""
        log = self.report["log"]
        last = max(
            (
                i
                for i, e in enumerate(log)
                if e["kind"] == "snapshot" and message_id in e["contents"]
            ),
            default=-1,
        )
        return [e for e in log[last + 1 :] if e["kind"] == "event" and e["messageId"] == message_id]

    def snapshot_text(self, message_id: str) -> tuple[str, str]:
        """The cursor and the answer's text of the last snapshot that had it ("0-0", "" if none)."""
        for entry in reversed(self.report["log"]):
            if entry["kind"] == "snapshot" and message_id in entry["contents"]:
                return entry["cursor"], entry["contents"][message_id]
        return "0-0", ""


def id_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


def check_exactly_once(result: FollowResult, stream: list[Event], stored: str) -> None:
    """The client ends with `stored`, having applied every event of the answer after its
    last snapshot exactly once, in order (0 duplicated, 0 missing), and every text it
    showed on the way was a prefix of it."""
    message = result.message
    message_id = message["id"]
    assert message["content"] == stored
    cursor, snapshot_text = result.snapshot_text(message_id)
    applied = result.applied(message_id)
    ids = [e["id"] for e in applied]
    assert len(ids) == len(set(ids)), "an event was applied twice"
    expected = [
        e.id
        for e in stream
        if e.id and e.data.get("message_id") == message_id and id_key(e.id) > id_key(cursor)
    ]
    assert ids == expected, (
        f"applied {len(ids)} events, the stream has {len(expected)} after {cursor}"
    )
    last_start = max((i for i, e in enumerate(applied) if e["event"] == "start"), default=None)
    pieces = applied[last_start:] if last_start is not None else applied
    prefix = "" if last_start is not None else snapshot_text
    assert prefix + "".join(e["text"] for e in pieces if e["event"] == "chunk") == stored
    for text in result.texts(message_id):
        assert stored.startswith(text), f"the client showed {text!r}, not a prefix of the answer"
    assert result.stats["repairs"] == 0, "an end's counts did not match: the snapshot repaired it"
