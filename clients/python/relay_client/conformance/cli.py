"""The command line of the conformance check: options in, the table and an exit status out."""

from __future__ import annotations

import argparse
import os

from . import run
from .state import Options


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m relay_client.conformance",
        description="Check a running relay deployment against the wire contract (API.md).",
    )
    parser.add_argument("url", help="the deployment's base URL")
    parser.add_argument(
        "--token",
        default=os.environ.get("RELAY_TOKEN"),
        help="a JWT, when access control is on (default: $RELAY_TOKEN)",
    )
    parser.add_argument("--origin", help="an origin in CORS_ORIGINS, to check CORS with")
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=20.0,
        help="how long to wait for a keep-alive (default 20; HEARTBEAT_SECONDS is 15)",
    )
    parser.add_argument("--skip-heartbeats", action="store_true", help="skip that wait")
    parser.add_argument(
        "--answer-seconds", type=float, default=120.0, help="how long an answer may take"
    )
    parser.add_argument("--reset-session", help="a session whose stream was trimmed")
    parser.add_argument(
        "--reset-prompts",
        type=int,
        default=2,
        help="answers in the reset check's own session, which trim it (default 2)",
    )
    return Options(**vars(parser.parse_args(argv)))  # each option is an Options field


def main(argv: list[str] | None = None) -> int:
    report = run(parse_args(argv))
    print(report.table())
    return 1 if report.failed else 0
