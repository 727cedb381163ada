"""Logging for the entry points: one line per event on stdout.

Messages name what they are about as `key=value` words, the session and
message ids first (`generation ended session=... message=... chunks=12`).
Two formats, by LOG_FORMAT (parsed in config.py, passed in by the entry points):

- `text` (the default): `time level pid logger message`, for people.
- `json`: one JSON object per line for log drains, with `time`, `level`,
  `logger`, `pid`, `msg`, every `key=value` word of the message as a field of
  its own (so a drain can search `session` or `message`), and a traceback as
  one `exc` string. Requests logged by gunicorn's workers come out the same
  way, with method, path, status and duration as fields.

Tokens never reach a line (API.md, Access control): `RedactTokens` replaces
the value of every `access_token=` query parameter, a bearer credential and
anything shaped like a JWT with `[redacted]`. It sits on the root handler
(every app logger), and on gunicorn's loggers themselves, where it rewrites
an access record's atoms (the request line, query string, referer, headers)
before the access log format reads them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"
# `key=value` words; a value ends at white space, without a trailing ':' or ','.
FIELD = re.compile(r"(?<![\w=])([a-z][a-z0-9_]*)=(\S+?)[:,]?(?=\s|$)")
RESERVED = frozenset({"time", "level", "logger", "pid", "msg", "exc"})
GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")
REDACTED = "[redacted]"
# The value of an access_token parameter (also %-encoded: access%5Ftoken), a
# bearer credential, and a JWT anywhere: three dot-separated base64url parts.
SECRETS = re.compile(
    r"(?P<name>(?i:access(?:_|%5f)token=|bearer\s+))[^\s&\"'#]+"
    r"|eyJ[\w-]*\.[\w-]+\.[\w-]*"
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            body.update(access_fields(record.args))
            body["msg"] = (
                f"{body.get('method', '')} {body.get('path', '')} {body.get('status', '')}"
            )
        else:
            body["msg"] = record.getMessage()
            for key, value in FIELD.findall(body["msg"]):
                if key not in RESERVED:
                    body.setdefault(key, value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exc"] = record.exc_text
        return json.dumps(body, ensure_ascii=False, default=str)


def access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """A gunicorn access record's atoms (its `access_log_format` names) as fields."""
    fields: dict[str, Any] = {
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "status": _int(atoms.get("s")),
        "bytes": _int(atoms.get("B")),
        "duration_ms": _int(atoms.get("M")),
        "remote": atoms.get("h"),
    }
    return {k: v for k, v in fields.items() if v not in (None, "", "-")}


def _int(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def may_hold_secret(text: str) -> bool:
    """What SECRETS could match, tested with substring searches: 10x faster than it."""
    if "eyJ" in text:
        return True
    lowered = text.lower()
    return "token" in lowered or "bearer" in lowered


def redact(text: str) -> str:
    """`text` with every token value replaced by [redacted]."""
    if not may_hold_secret(text):
        return text
    return SECRETS.sub(lambda m: (m["name"] or "") + REDACTED, text)


class RedactTokens(logging.Filter):
    """Rewrites a record so that no token value reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict):
            # gunicorn's access atoms, read by its format (and by JsonFormatter):
            # one search over them all first, as most requests carry no token.
            atoms = {k: v for k, v in record.args.items() if isinstance(v, str)}
            if may_hold_secret("\n".join(atoms.values())):
                for key, value in atoms.items():
                    record.args[key] = redact(value)
        else:
            message = record.getMessage()
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        if record.exc_info:
            # Formatted once, here, so that every formatter prints the redacted text.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send every record to stdout in `fmt`: LOG_FORMAT, from the app's config."""
    fmt = fmt.lower()
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    redactor = RedactTokens()
    handler.addFilter(redactor)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in GUNICORN_LOGGERS:
        # gunicorn's loggers have handlers of their own (accesslog/errorlog "-")
        # and do not propagate: the filter goes on the loggers, where their
        # records are made, so it holds whatever handlers gunicorn sets.
        gunicorn_logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in gunicorn_logger.filters):
            gunicorn_logger.addFilter(redactor)
        if fmt == "json":  # in a gunicorn worker, they print JSON too
            for gunicorn_handler in gunicorn_logger.handlers:
                gunicorn_handler.setFormatter(formatter)
