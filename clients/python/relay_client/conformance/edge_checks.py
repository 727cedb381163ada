"""Checks of the edges: bad input gets API.md's JSON errors, CORS, and access control."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from .report import Failed, Skipped, expect
from .state import State

UNKNOWN_ID = "conformance" + "0" * 21  # a well-formed id no deployment issued
FOREIGN_ORIGIN = "https://relay-conformance.invalid"
PREFLIGHT_HEADERS = {"authorization", "content-type", "idempotency-key", "last-event-id"}
EXPOSED = {"retry-after", "idempotent-replayed"}


@dataclass(frozen=True)
class Case:
    """One bad request and the error it must get."""

    what: str
    method: str
    path: str
    status: int
    code: str | None  # None: any code, as long as the body is API.md's shape
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] | None = None
    json: Any = None
    content: bytes | None = None
    auth: bool = True


def error_cases(state: State) -> list[Case]:
    sid, mid = state.sid, state.mid
    base = f"/api/sessions/{sid}"
    as_json = {"Content-Type": "application/json"}
    cases = [
        Case("Last-Event-ID: abc", "GET", f"{base}/events", 400, "invalid_cursor",
             headers={"Last-Event-ID": "abc"}),
        Case("?last_event_id=1-", "GET", f"{base}/events", 400, "invalid_cursor",
             params={"last_event_id": "1-"}),
        Case("after=-1", "GET", f"{base}/poll", 400, "invalid_cursor", params={"after": "-1"}),
        Case("after=1.5-0", "GET", f"{base}/poll", 400, "invalid_cursor",
             params={"after": "1.5-0"}),
        Case("after=2^64-0", "GET", f"{base}/poll", 400, "invalid_cursor",
             params={"after": f"{2**64}-0"}),
        Case("timeout=soon", "GET", f"{base}/poll", 400, "invalid_timeout",
             params={"timeout": "soon"}),
        Case("wait=soon", "GET", f"{base}/messages/{mid}", 400, "invalid_wait",
             params={"wait": "soon"}),
        Case("a short session id", "GET", "/api/sessions/abc", 400, "invalid_session_id"),
        Case("an unknown session", "GET", f"/api/sessions/{UNKNOWN_ID}", 404, "session_not_found"),
        Case("an unknown message", "GET", f"{base}/messages/{UNKNOWN_ID}", 404,
             "message_not_found"),
        Case("a text/plain prompt", "POST", f"{base}/messages", 415, "unsupported_media_type",
             headers={"Content-Type": "text/plain"}, content=b"hello"),
        Case("a cut JSON body", "POST", f"{base}/messages", 400, "invalid_json",
             headers=as_json, content=b'{"content": '),
        Case("an empty prompt", "POST", f"{base}/messages", 400, "empty_prompt",
             json={"content": ""}),
        Case("a prompt with NUL", "POST", f"{base}/messages", 400, "invalid_prompt",
             json={"content": "a\u0000b"}),
        Case("a 256-character Idempotency-Key", "POST", f"{base}/messages", 400,
             "invalid_idempotency_key", headers={"Idempotency-Key": "k" * 256},
             json={"content": "x"}),
        Case("a used Idempotency-Key, another prompt", "POST", f"{base}/messages", 422,
             "idempotency_key_reused", headers={"Idempotency-Key": state.key},
             json={"content": state.prompt + " (another)"}),
        Case("regenerate a prompt", "POST", f"{base}/messages/{user_message(state)}/regenerate",
             409, "not_regenerable"),
        Case("an unknown route", "GET", "/api/conformance-no-such-route", 404, None),
        Case("a wrong method", "PUT", "/api/sessions", 405, None),
    ]  # fmt: skip
    if state.options.token:
        cases.append(Case("no token", "GET", base, 401, "unauthorized", auth=False))
    return cases


def user_message(state: State) -> str:
    snapshot = state.deployment.request("GET", f"/api/sessions/{state.sid}").json()
    users = [m["id"] for m in snapshot["messages"] if m.get("role") == "user"]
    expect(users, "the snapshot holds no prompt")
    return users[0]


def answer_to(state: State, case: Case) -> httpx.Response:
    return state.deployment.request(
        case.method,
        case.path,
        auth=case.auth,
        headers=case.headers,
        params=case.params,
        json=case.json,
        content=case.content,
    )


def json_errors(state: State) -> str:
    cases = error_cases(state)
    for case in cases:
        response = answer_to(state, case)
        got = f"{case.what}: status {response.status_code}"
        expect(response.status_code == case.status, f"{got}, not {case.status}")
        media = response.headers.get("content-type", "")
        expect(media.startswith("application/json"), f"{got} as {media!r}, not JSON")
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            raise Failed(
                f"{got}: not {{error: {{code, message}}}}: {response.text[:80]!r}"
            ) from None
        expect(isinstance(code, str) and isinstance(message, str), f"{got}: code/message not text")
        expect(case.code in (None, code), f"{got}: code {code!r}, not {case.code!r}")
        if case.status == 401:
            challenge = response.headers.get("WWW-Authenticate", "")
            expect(challenge.startswith("Bearer"), f"{got}: WWW-Authenticate {challenge!r}")
    return f"{len(cases)} bad requests, each a JSON error with its code"


def listed(header: str | None) -> set[str]:
    return {part.strip().lower() for part in (header or "").split(",") if part.strip()}


def cors(state: State) -> str:
    origin = state.options.origin
    if not origin:
        raise Skipped("no --origin given")
    deployment, path = state.deployment, f"/api/sessions/{state.sid}/messages"
    preflight = deployment.request(
        "OPTIONS",
        path,
        auth=False,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key",
        },
    )
    expect(preflight.status_code in (200, 204), f"preflight: status {preflight.status_code}")
    expect(preflight.headers.get("access-control-allow-origin") == origin, "preflight: no ACAO")
    methods = listed(preflight.headers.get("access-control-allow-methods"))
    expect({"get", "post", "delete"} <= methods, f"preflight allows {sorted(methods)}")
    allowed = listed(preflight.headers.get("access-control-allow-headers"))
    expect(PREFLIGHT_HEADERS <= allowed, f"preflight allows headers {sorted(allowed)}")
    ids = state.ids()
    for what, response in [
        ("GET snapshot", deployment.request("GET", f"/api/sessions/{state.sid}",
                                            headers={"Origin": origin})),
        ("SSE", deployment.read_sse(f"/api/sessions/{state.sid}/events", seconds=10,
                                    headers={"Origin": origin, "Last-Event-ID": ids[-2]},
                                    until=lambda frame: True)),
    ]:  # fmt: skip
        headers = response.headers
        expect(headers.get("access-control-allow-origin") == origin, f"{what}: no ACAO")
        expect("origin" in listed(headers.get("vary")), f"{what}: no Vary: Origin")
        exposed = listed(headers.get("access-control-expose-headers"))
        expect(EXPOSED <= exposed, f"{what}: exposes {sorted(exposed)}")
    foreign = deployment.request(
        "GET", f"/api/sessions/{state.sid}", headers={"Origin": FOREIGN_ORIGIN}
    )
    expect("access-control-allow-origin" not in foreign.headers, "another origin is allowed too")
    return f"{origin} allowed (preflight, JSON, SSE); another origin is not"


def access_control(state: State) -> str:
    token = state.options.token
    if not token:
        raise Skipped("no --token given")
    deployment, ids = state.deployment, state.ids()
    raw = deployment.read_sse(
        f"/api/sessions/{state.sid}/events",
        params={"access_token": token, "last_event_id": ids[-2]},
        until=lambda frame: True,
        seconds=10,
        auth=False,
    )
    expect(raw.status == 200, f"SSE with ?access_token=: status {raw.status}")
    stranger = deployment.request(
        "GET", f"/api/sessions/{state.sid}", auth=False,
        headers={"Authorization": f"Bearer {uuid.uuid4().hex}"},
    )  # fmt: skip
    expect(stranger.status_code == 401, f"a malformed token: status {stranger.status_code}")
    return "?access_token= works for EventSource; a malformed token gets 401"
