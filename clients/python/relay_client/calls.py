"""Plans for the one-shot API calls (API.md, Endpoints and Tools), with their retry rules.

Every call goes through `exchange`:
- An answer that was lost (no answer, a cut body, or a gateway's 502/504
  or relay's 503, "can be retried") is asked again after a wait
  (Retry-After, else backoff), up to `Policy.attempts` tries; long-polls
  (`persistent`) try until one comes back.
- A 401 asks the token provider for a new token, once; refused again, the
  call raises Unauthorized.

What a retried request means differs, so each call says:
- a prompt goes again under the same `Idempotency-Key`, and the server
  replays its first 202; after a loss, a 409 may be our own first post
  still being stored, so it is asked again too (as relay's chat page does);
- a regenerate after a loss that meets a 409 looks in the snapshot: a new
  last answer is the one our lost request made;
- a delete after a loss that meets a 404 was done by the lost request;
- cancel, the tool decisions (the same decision again is a 202) and every
  GET are safe to repeat as they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from .actions import Authorize, Plan, Request, Send, Sleep
from .errors import ConnectionLost, error_from, json_body
from .events import Event, Poll
from .retry import Policy, retry_after_seconds

log = logging.getLogger(__name__)

# Answers that say the request may not have been served, or not yet.
LOST_STATUSES = frozenset({502, 503, 504})
OMITTED: Any = object()  # `tool_output` without an output


@dataclass(frozen=True)
class Reply:
    response: httpx.Response
    lost: bool  # an earlier try of this request may have reached the server


def exchange(
    request: Request, policy: Policy, *, retry_conflict: bool = False, persistent: bool = False
) -> Plan[Reply]:
    """Send `request` until an answer comes that was not lost (see the module docstring)."""
    backoff = policy.backoff()
    failures, lost, renewed = 0, False, False
    while True:
        token = yield Authorize()
        outcome = yield Send(request, token)
        wait = None
        if isinstance(outcome, httpx.Response):
            status = outcome.status_code
            if status == 401 and not renewed:
                renewed = True
                if (yield Authorize(renew=True)) is not None:
                    continue
            again = status in LOST_STATUSES or (retry_conflict and lost and status == 409)
            if not again:
                return Reply(outcome, lost)
            wait = retry_after_seconds(outcome.headers.get("Retry-After"))
        failures, lost = failures + 1, True
        limit = policy.reconnects if persistent else policy.attempts
        if limit is not None and failures >= limit:
            if isinstance(outcome, httpx.Response):
                return Reply(outcome, lost)
            raise ConnectionLost(
                f"{request.method} {request.path}: no answer after {failures} tries"
            ) from outcome
        delay = backoff.delay(failures, at_least=wait)
        log.debug(
            "retry %s %s in %.2fs (try %d)", request.method, request.path, delay, failures + 1
        )
        yield Sleep(delay)


def expect(reply: Reply, status: int) -> Any:
    """The answer's JSON when its status is `status`; its error raised otherwise."""
    if reply.response.status_code != status:
        raise error_from(reply.response)
    return None if status == 204 else json_body(reply.response)


def session_path(session_id: str, *rest: str) -> str:
    return "/".join(
        ["/api/sessions", quote(session_id, safe=""), *(quote(p, safe="") for p in rest)]
    )


def create_session(policy: Policy) -> Plan[str]:
    reply = yield from exchange(Request("POST", "/api/sessions"), policy)
    return str(expect(reply, 201)["session_id"])


def snapshot(session_id: str, policy: Policy) -> Plan[dict[str, Any]]:
    reply = yield from exchange(Request("GET", session_path(session_id)), policy)
    return expect(reply, 200)


def message(
    session_id: str, message_id: str, policy: Policy, wait: float | None = None
) -> Plan[dict[str, Any]]:
    params = None if wait is None else {"wait": f"{wait:g}"}
    request = Request(
        "GET",
        session_path(session_id, "messages", message_id),
        params=params,
        read_timeout=None if wait is None else wait + 10,
    )
    reply = yield from exchange(request, policy, persistent=wait is not None)
    return expect(reply, 200)


def post_prompt(session_id: str, content: str, key: str, policy: Policy) -> Plan[dict[str, Any]]:
    request = Request(
        "POST",
        session_path(session_id, "messages"),
        headers={"Idempotency-Key": key},
        json={"content": content},
    )
    reply = yield from exchange(request, policy, retry_conflict=True)
    return expect(reply, 202)


def regenerate(session_id: str, message_id: str, policy: Policy) -> Plan[dict[str, Any]]:
    path = session_path(session_id, "messages", message_id, "regenerate")
    reply = yield from exchange(Request("POST", path), policy)
    if reply.lost and reply.response.status_code == 409:
        state = yield from snapshot(session_id, policy)
        answers = [m for m in state["messages"] if m.get("role") == "assistant"]
        if answers and answers[-1]["id"] != message_id:
            return {"session_id": session_id, "message_id": answers[-1]["id"]}
    return expect(reply, 202)


def cancel(session_id: str, message_id: str, policy: Policy) -> Plan[None]:
    path = session_path(session_id, "messages", message_id, "cancel")
    reply = yield from exchange(Request("POST", path), policy)
    expect(reply, 202)


def delete(session_id: str, policy: Policy) -> Plan[None]:
    reply = yield from exchange(Request("DELETE", session_path(session_id)), policy)
    if not (reply.lost and reply.response.status_code == 404):
        expect(reply, 204)


def list_sessions(before: str | None, policy: Policy) -> Plan[dict[str, Any]]:
    params = None if before is None else {"before": before}
    reply = yield from exchange(Request("GET", "/api/sessions", params=params), policy)
    return expect(reply, 200)


def poll(
    session_id: str, after: str | None, timeout: float, policy: Policy, *, persistent: bool = False
) -> Plan[Poll]:
    params = {"timeout": f"{timeout:g}"}
    if after is not None:
        params["after"] = after
    request = Request(
        "GET", session_path(session_id, "poll"), params=params, read_timeout=timeout + 10
    )
    reply = yield from exchange(request, policy, persistent=persistent)
    body = expect(reply, 200)
    events = [Event.from_poll(item) for item in body["events"]]
    return Poll(events, body["cursor"], bool(body["reset"]))


def approve(
    session_id: str,
    message_id: str,
    call_id: str,
    approved: bool,
    reason: str | None,
    policy: Policy,
) -> Plan[None]:
    """A person's decision on a tool call that waits for one (API.md, Tools)."""
    body: dict[str, Any] = {"approved": bool(approved)}
    if reason is not None:
        body["reason"] = reason
    yield from tool_input(session_id, message_id, call_id, "approval", body, policy)


def tool_output(
    session_id: str, message_id: str, call_id: str, output: Any, error: str | None, policy: Policy
) -> Plan[None]:
    """A client tool's result (API.md, Tools): its output (any JSON), or its error."""
    if (output is OMITTED) == (error is None):
        raise ValueError("give a tool's output or its error, one of them")
    body = {"error": error} if error is not None else {"output": output}
    yield from tool_input(session_id, message_id, call_id, "output", body, policy)


def tool_input(
    session_id: str, message_id: str, call_id: str, kind: str, body: dict[str, Any], policy: Policy
) -> Plan[None]:
    path = session_path(session_id, "messages", message_id, "tools", call_id, kind)
    reply = yield from exchange(Request("POST", path, json=body), policy)
    expect(reply, 202)
