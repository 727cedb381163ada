"""Logging for the entry points: one line per event on stdout.

Messages name what they are about as `key=value` words, the session and
message ids first (`generation ended session=... message=... chunks=12`).
Two formats, by LOG_FORMAT:

- `text` (the default): `time level pid logger message`, for people.
- `json`: one JSON object per line for log drains, with `time`, `level`,
  `logger`, `pid`, `msg`, every `key=value` word of the message as a field of
  its own (so a drain can search `session` or `message`), and a traceback as
  one `exc` string. Requests logged by gunicorn's workers come out the same
  way, with method, path, status and duration as fields.
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


def configure(level: str = "INFO", fmt: str = "text") -> None:
    """Send every record to stdout in `fmt`: LOG_FORMAT, from the app's config."""
    fmt = fmt.lower()
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    if fmt == "json":
        # gunicorn's loggers have handlers of their own (accesslog/errorlog "-"):
        # in a gunicorn worker, they print JSON too.
        for name in GUNICORN_LOGGERS:
            for gunicorn_handler in logging.getLogger(name).handlers:
                gunicorn_handler.setFormatter(formatter)
