"""The conformance check (relay_client.conformance): it passes against relay, and names
what a broken deployment breaks (real relay behind tests/support/broken_wire.py).
"""

from __future__ import annotations

import subprocess
import time

import jwt
import pytest
from relay_client.conformance import NAMES, Options, run

from tests.support.broken_wire import HtmlErrors, OffByOne, RepeatingIds
from tests.support.processes import Process
from tests.support.pyclient import run_module

pytestmark = pytest.mark.slow

ORIGIN = "https://app.example.test"
SECRET = "a-test-secret-for-the-conformance-check"
# Two answers of the model server's default length (about 17 entries each) are
# more than this: the second one trims the session's stream, so `reset` runs.
TRIMMING = {"STREAM_MAXLEN": "24"}
QUICK = {"heartbeat_seconds": 5.0, "answer_seconds": 30.0}


def conformance(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m relay_client.conformance ...` as an operator runs it."""
    return run_module("relay_client.conformance", *args)


def rows(table: str) -> dict[str, str]:
    """check name -> result, from the printed table."""
    found = {}
    for line in table.splitlines():
        for name in NAMES:
            if line.startswith(name + "  "):
                found[name] = line[len(name) :].split()[0]
    return found


def test_relay_passes_every_check(private_stack) -> None:
    stack = private_stack(CORS_ORIGINS=ORIGIN, **TRIMMING)
    web = stack.web()
    stack.worker()
    result = conformance(web, "--origin", ORIGIN, "--heartbeat-seconds", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    results = rows(result.stdout)
    assert set(results) == set(NAMES), result.stdout
    skipped = {name for name, status in results.items() if status != "pass"}
    assert skipped == {"access control"}, result.stdout  # no --token: access control is off


def test_relay_with_access_control_passes_with_a_token(private_stack) -> None:
    stack = private_stack(AUTH_JWT_SECRET=SECRET, **TRIMMING)
    web = stack.web()
    stack.worker()
    token = jwt.encode({"sub": "operator", "exp": int(time.time()) + 600}, SECRET, "HS256")
    report = run(Options(web, token=token, **QUICK))
    assert report.failed == [], report.table()
    assert report.status("access control") == "pass", report.table()
    assert report.status("reset") == "pass", report.table()


def test_an_untrimmed_stream_skips_reset_and_says_why(web: str, worker: Process) -> None:
    report = run(Options(web, skip_heartbeats=True, **QUICK))
    assert report.failed == [], report.table()
    reset = next(o for o in report.outcomes if o.name == "reset")
    assert reset.status == "skip" and "not trimmed" in reset.detail, report.table()


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        (RepeatingIds, {"event ids"}),
        (OffByOne, {"resume by header", "resume by query"}),
        (HtmlErrors, {"json errors"}),
    ],
    ids=["ids repeated", "resume off by one", "html error page"],
)
def test_a_broken_deployment_fails_naming_the_check(
    web: str, worker: Process, broken, named: set[str]
) -> None:
    proxy = broken(web).start()
    try:
        report = run(Options(proxy.base_url, skip_heartbeats=True, **QUICK))
    finally:
        proxy.stop()
    assert named <= set(report.failed), report.table()
    assert "FAILED: " in report.table()


def test_the_command_exits_non_zero_and_names_the_failed_check(web: str, worker: Process) -> None:
    proxy = OffByOne(web).start()
    try:
        result = conformance(proxy.base_url, "--skip-heartbeats", "--answer-seconds", "30")
    finally:
        proxy.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert rows(result.stdout)["resume by header"] == "FAIL", result.stdout
    assert "FAILED: " in result.stdout and "resume by header" in result.stdout.splitlines()[-1]
