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

`AiSdk.tool_chat(...)` runs tests/js/tool_chat.mjs: the SDK's own chat
(`AbstractChat`, which `useChat` wraps) through tool calls, approving with
`addToolApprovalResponse` and giving client outputs with `addToolOutput`,
resubmitting as `sendAutomaticallyWhen` decides. It returns every request
body the transport sent, so tests parse exactly what the SDK posts.

`AiSdk.validate(messages)` runs tests/js/validate_messages.mjs: the SDK's
`safeValidateUIMessages`, which apps run on stored messages.
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
TOOL_CHAT = JS_DIR / "tool_chat.mjs"
VALIDATE = JS_DIR / "validate_messages.mjs"
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


@dataclass(frozen=True)
class ToolChatResult:
    """What tool_chat.mjs printed."""

    status: str  # the chat's last status: ready or error
    error: dict[str, Any] | None
    messages: list[dict[str, Any]]
    requests: list[dict[str, Any]]  # method, url, body (parsed JSON) of each request
    responses: list[dict[str, Any]]  # status, chunkTypes of each response
    tool_calls: list[str]  # the call ids onToolCall saw, in order

    @property
    def answer(self) -> dict[str, Any]:
        return self.messages[-1]

    def tools(self) -> list[dict[str, Any]]:
        """The answer's tool parts, in order."""
        return [p for p in self.answer["parts"] if p["type"].startswith("tool-")]


def _run(script: Any, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    result = subprocess.run(
        ["node", str(script), json.dumps(args)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} failed:\n{result.stderr}")
    return json.loads(result.stdout)


class AiSdk:
    """Runs the harness scripts in tests/js with the machine's node."""

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
        out = _run(CLIENT, args, timeout)
        return ChatResult(out["status"], out["message"], out["chunkTypes"], out["error"])

    def tool_chat(
        self, api: str, chat_id: str, timeout: float = RUN_TIMEOUT_SECONDS, **options: Any
    ) -> ToolChatResult:
        """A chat through tool calls; `options` as tool_chat.mjs's header lists them."""
        out = _run(TOOL_CHAT, {"api": api, "chatId": chat_id, **options}, timeout)
        return ToolChatResult(
            out["status"],
            out["error"],
            out["messages"],
            out["requests"],
            out["responses"],
            out["toolCalls"],
        )

    def validate(self, messages: list[dict[str, Any]]) -> str | None:
        """None when the SDK accepts these UI messages, else its error message."""
        return _run(VALIDATE, {"messages": messages}, RUN_TIMEOUT_SECONDS)["error"]
