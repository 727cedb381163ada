"""Operator commands: `flask --app wsgi relay ...` (and `flask --app wsgi db ...` for migrations).

    relay enqueue-test [PROMPT]   post a prompt through the real API code and print the answer
    relay queue [--older-than S]  queued and running jobs, and running ones that look stuck
    relay token --sub NAME        a signed token and a chat page URL that carries it

On Heroku: `heroku run flask --app wsgi relay queue`. Both commands go through
the app's own code: `enqueue-test` posts with Flask's test client, so
validation, limits and queueing are exactly the API's; it then reads the
session's stream (reader.py, read only) until the answer's final event.

A malformed setting stops any command with one line (wsgi.py); Redis or the
database not answering ends a `relay` command with one line naming REDIS_URL
or DATABASE_URL (readiness.py), not a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any
from urllib.parse import urlencode

import click
import redis
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo
from sqlalchemy.exc import InterfaceError, OperationalError

from webapp.http import auth
from webapp.http.params import ID_PATTERN
from webapp.ops import readiness
from webapp.read import reader
from webapp.storage import events, jobs, keys
from webapp.storage.extensions import redis_store


class RelayGroup(AppGroup):
    """Commands whose failure to reach Redis or the database is one line, exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            app = ctx.ensure_object(ScriptInfo).load_app()
            raise click.ClickException(readiness.redis_unreachable(app, exc).detail) from None
        except (OperationalError, InterfaceError) as exc:
            app = ctx.ensure_object(ScriptInfo).load_app()
            problem = (
                readiness.schema_missing(app, readiness.one_line(exc))
                if readiness.is_schema_error(exc)
                else readiness.database_unreachable(app, exc)
            )
            raise click.ClickException(problem.detail) from None


relay = RelayGroup("relay", help="Operate relay: test prompts, the job queue.")

FOLLOW_BLOCK_MS = 1000


def _api(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    response = current_app.test_client().open(path, method=method, **kwargs)
    body = response.get_json(silent=True) or {}
    if response.status_code >= 400:
        error = body.get("error", {})
        raise click.ClickException(
            f"{method} {path}: {response.status_code} {error.get('code')}: {error.get('message')}"
        )
    return body


@relay.command("enqueue-test")
@click.argument("prompt", default="Hello from relay: say something short.")
@click.option("--session", "session_id", help="Post into this session instead of a new one.")
@click.option(
    "--follow/--no-follow", default=True, show_default=True, help="Print the answer as it streams."
)
@click.option(
    "--timeout",
    "timeout_seconds",
    default=120.0,
    show_default=True,
    help="Seconds to wait for the answer's final event.",
)
def enqueue_test(prompt: str, session_id: str | None, follow: bool, timeout_seconds: float) -> None:
    """Post PROMPT as a client would, then print the answer as it streams."""
    if session_id is None:
        session_id = _api("POST", "/api/sessions")["session_id"]
    accepted = _api("POST", f"/api/sessions/{session_id}/messages", json={"content": prompt})
    message_id = accepted["message_id"]
    click.echo(f"session {session_id}")
    click.echo(f"message {message_id}")
    if follow:
        sys.exit(_follow(session_id, message_id, timeout_seconds))


def _follow(session_id: str, message_id: str, timeout_seconds: float) -> int:
    """Print the message's chunks, then its end or error; the exit status."""
    client = redis_store.blocking_client(
        current_app, read_timeout_seconds=FOLLOW_BLOCK_MS / 1000 + 5
    )
    cursor, deadline = events.ZERO_ID, time.monotonic() + timeout_seconds
    try:
        while time.monotonic() < deadline:
            batch = reader.read_blocking(
                client, session_id, cursor, count=500, block_ms=FOLLOW_BLOCK_MS
            )
            for entry in batch:
                cursor = entry.id
                data = entry.parsed()
                if data.get("message_id") != message_id:
                    continue
                if (status := _show(entry.event, data)) is not None:
                    return status
        click.echo(f"\nno final event after {timeout_seconds:g}s")
        return 2
    finally:
        client.close()


def _show(event: str, data: dict[str, Any]) -> int | None:
    """Print one event of the answer; the exit status once it is final, else None."""
    if event == events.CHUNK:
        click.echo(data.get("text", ""), nl=False)
    elif event == events.START and data.get("attempt", 1) > 1:
        click.echo(f"\n[attempt {data['attempt']}: starting over]")
    elif event == events.END:
        click.echo(
            f"\nend finish_reason={data.get('finish_reason')} "
            f"chunks={data.get('chunks')} ms={data.get('duration_ms')}"
        )
        return 0
    elif event == events.ERROR:
        error = data.get("error", {})
        click.echo(f"\nerror code={error.get('code')}: {error.get('message')}")
        return 1
    return None


@relay.command("queue")
@click.option(
    "--older-than",
    "older_than_seconds",
    default=120.0,
    show_default=True,
    help="A running job enqueued longer ago than this is listed as stuck.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
def queue(older_than_seconds: float, as_json: bool) -> None:
    """Jobs queued and running, and running jobs that look stuck."""
    client = redis_store.client
    queued, running = jobs.queue_depth(client)
    now = time.time()
    seconds, microseconds = client.time()  # leases run on Redis server time
    server_now = seconds + microseconds / 1e6
    stuck = []
    for raw in client.lrange(keys.JOBS_PROCESSING, 0, 9999):
        try:
            job = jobs.Job.loads(raw)
        except (ValueError, KeyError, TypeError):
            stuck.append({"raw": raw, "problem": "malformed"})
            continue
        age = now - job.enqueued_at
        if age > older_than_seconds:
            lease_ms = client.zscore(keys.JOBS_LEASES, raw)
            stuck.append(
                {
                    "session_id": job.session_id,
                    "message_id": job.message_id,
                    "attempt": job.attempt,
                    "age_seconds": round(age, 1),
                    "lease_expires_in_seconds": None
                    if lease_ms is None
                    else round(lease_ms / 1000 - server_now, 1),
                }
            )
    if as_json:
        click.echo(json.dumps({"queued": queued, "running": running, "stuck": stuck}))
        return
    click.echo(f"queued {queued}")
    click.echo(f"running {running}")
    click.echo(f"stuck {len(stuck)} (running for more than {older_than_seconds:g}s)")
    for job in stuck:
        if "problem" in job:
            click.echo(f"  malformed job {job['raw'][:200]!r}")
            continue
        lease = job["lease_expires_in_seconds"]
        lease_text = (
            "no lease"
            if lease is None
            else (
                f"lease expires in {lease:g}s" if lease >= 0 else f"lease expired {-lease:g}s ago"
            )
        )
        click.echo(
            f"  session={job['session_id']} message={job['message_id']} "
            f"attempt={job['attempt']} age={job['age_seconds']:g}s {lease_text}"
        )


@relay.command("token")
@click.option("--sub", required=True, help="The user the token speaks for (its `sub`).")
@click.option(
    "--ttl",
    "ttl_seconds",
    default=3600,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seconds until the token expires.",
)
@click.option("--session", "session_id", help="Scope the token to this one session (its `sid`).")
@click.option(
    "--url",
    "base_url",
    default=lambda: f"http://localhost:{os.environ.get('PORT', '5000')}/",
    show_default="http://localhost:$PORT/",
    help="Where the chat page is served.",
)
def token(sub: str, ttl_seconds: int, session_id: str | None, base_url: str) -> None:
    """Sign a token with AUTH_JWT_SECRET, as a team's backend would, for trying access control."""
    secret = current_app.config.get("AUTH_JWT_SECRET")
    if not secret:
        raise click.ClickException(
            "relay token signs with AUTH_JWT_SECRET, which is not set "
            "(with only AUTH_JWT_PUBLIC_KEY, your own backend signs tokens)"
        )
    if session_id is not None and not ID_PATTERN.match(session_id):
        raise click.ClickException(f"--session: not a session id: {session_id!r}")
    signed = auth.mint(
        secret,
        sub,
        ttl_seconds,
        session_id=session_id,
        audience=current_app.config.get("AUTH_JWT_AUDIENCE") or None,
    )
    # The token rides in the fragment, which the browser never sends to a server.
    query = f"?{urlencode({'session': session_id})}" if session_id else ""
    click.echo(f"token {signed}")
    click.echo(f"url {base_url.rstrip('/')}/{query}#access_token={signed}")


def init_app(app: Flask) -> None:
    app.cli.add_command(relay)
