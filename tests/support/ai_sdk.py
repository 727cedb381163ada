"""Run the real AI SDK (npm `ai`, pinned in tests/js) against an HTTP server.

Tests that need it take the `ai_sdk` fixture (tests/conftest.py), which
installs tests/js's locked packages once (`npm ci`) and skips the test, with
the reason, on a machine without node and npm. The install is skipped when
tests/js/node_modules already holds the lockfile it was made from, so a test
session costs one `npm ci` only after package-lock.json changes.

`AiSdk.chat(...)` runs tests/js/chat_client.mjs, which drives
`DefaultChatTransport` and `readUIMessageStream` as `useChat` does, and
returns what it printed: the final UIMessage, the chunk types it parsed, and
any error the transport threw (with its HTTP status).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT

JS_DIR = ROOT / "tests" / "js"
CLIENT = JS_DIR / "chat_client.mjs"
# Written after a successful `npm ci`: the digest of the lockfile it installed.
STAMP = JS_DIR / ".installed-lock"
INSTALL_TIMEOUT_SECONDS = 300
RUN_TIMEOUT_SECONDS = 60


class NodeMissing(RuntimeError):
    """node or npm is not on PATH; the tests that need them skip."""


def _lock_digest(js_dir: Path) -> str:
    return hashlib.sha256((js_dir / "package-lock.json").read_bytes()).hexdigest()


def install(js_dir: Path = JS_DIR) -> None:
    """`npm ci` in `js_dir` unless its node_modules already matches the lockfile."""
    if not (shutil.which("node") and shutil.which("npm")):
        raise NodeMissing("node and npm are needed to run the JavaScript tests")
    digest = _lock_digest(js_dir)
    stamp = js_dir / STAMP.name
    # Two test sessions in one checkout must not install over each other.
    with open(js_dir / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == digest:
            return
        stamp.unlink(missing_ok=True)
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
            cwd=js_dir,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed in {js_dir}:\n{result.stdout}\n{result.stderr}")
        stamp.write_text(digest)


def installed_version() -> str:
    """The `ai` version npm installed (package.json pins it exactly)."""
    package = JS_DIR / "node_modules" / "ai" / "package.json"
    return json.loads(package.read_text())["version"]


@dataclass(frozen=True)
class ChatResult:
    """What chat_client.mjs printed."""

    status: str  # finished, no-stream, aborted or error
    message: dict[str, Any] | None  # the last UIMessage
    chunk_types: list[str]
    error: dict[str, Any] | None  # name, message, statusCode, responseBody

    def parts(self, kind: str) -> list[dict[str, Any]]:
        return [p for p in (self.message or {}).get("parts", []) if p["type"] == kind]

    @property
    def text(self) -> str:
        return "".join(p["text"] for p in self.parts("text"))

    @property
    def reasoning(self) -> str:
        return "".join(p["text"] for p in self.parts("reasoning"))


class AiSdk:
    """Runs chat_client.mjs with the machine's node."""

    def chat(
        self,
        api: str,
        chat_id: str,
        action: str = "send",
        timeout: float = RUN_TIMEOUT_SECONDS,
        **options: Any,
    ) -> ChatResult:
        """One send or reconnect; `options` as chat_client.mjs's header lists them."""
        args = {"api": api, "chatId": chat_id, "action": action, **options}
        result = subprocess.run(
            ["node", str(CLIENT), json.dumps(args)],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"chat_client.mjs failed:\n{result.stderr}")
        out = json.loads(result.stdout)
        return ChatResult(out["status"], out["message"], out["chunkTypes"], out["error"])
