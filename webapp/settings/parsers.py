"""The parsers of settings: raw environment text -> a checked value (config.py's table).

Each parser is a small callable with an `expected` text that config.py puts
in the one line a malformed value stops a process with. Like config.py, this
module imports only the standard library (gunicorn's arbiter loads it).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from webapp.exceptions import Invalid, SettingError  # noqa: F401  (config.X names them)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Rate(NamedTuple):
    """A rate limit: at most `limit` per `period_seconds`."""

    limit: int
    period_seconds: int


# -- parsers: raw text -> value, or ValueError; `expected` is said when it fails --


class Parser(Protocol):
    @property
    def expected(self) -> str:
        """What a good value looks like, for the error line."""

    def __call__(self, raw: str) -> Any: ...


@dataclass(frozen=True)
class Integer:
    low: int
    high: int | None = None

    @property
    def expected(self) -> str:
        if self.high is None:
            return f"a whole number, at least {self.low}"
        return f"a whole number from {self.low} to {self.high}"

    def __call__(self, raw: str) -> int:
        value = int(raw)
        if value < self.low or (self.high is not None and value > self.high):
            raise ValueError
        return value


@dataclass(frozen=True)
class Number:
    """A finite float; `low` is excluded when `above` is set (a duration that must pass)."""

    low: float
    high: float | None = None
    above: bool = False

    @property
    def expected(self) -> str:
        low = f"greater than {self.low:g}" if self.above else f"at least {self.low:g}"
        high = f" and at most {self.high:g}" if self.high is not None else ""
        return f"a number {low}{high}"

    def __call__(self, raw: str) -> float:
        value = float(raw)
        too_low = value <= self.low if self.above else value < self.low
        if not math.isfinite(value) or too_low or (self.high is not None and value > self.high):
            raise ValueError
        return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Boolean:
    expected: str = "one of 1, true, yes, on, 0, false, no, off"

    def __call__(self, raw: str) -> bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]
    upper: bool = False

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(self.options)

    def __call__(self, raw: str) -> str:
        value = raw.upper() if self.upper else raw.lower()
        if value not in self.options:
            raise ValueError
        return value


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_BYTE_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30})
_BYTE_SIZE = re.compile(r"\A(\d+)\s*([a-z]*)\Z")


@dataclass(frozen=True)
class ByteSize:
    """A number of bytes, bare or with a unit: 67108864, 64MiB, 500 kB."""

    low: int
    high: int | None = None

    @property
    def expected(self) -> str:
        high = f" and at most {self.high:,}" if self.high is not None else ""
        return f"bytes (a whole number, or with kB, MB, GB, KiB, MiB, GiB), at least {self.low:,}{high}"

    def __call__(self, raw: str) -> int:
        match = _BYTE_SIZE.match(raw.lower())
        unit = _BYTE_UNITS.get(match[2]) if match else None
        if unit is None:
            raise ValueError
        value = int(match[1]) * unit
        if value < self.low or (self.high is not None and value > self.high):
            raise ValueError
        return value


_UNIT_SECONDS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_RATE = re.compile(r"\A\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*\Z")


@dataclass(frozen=True)
class RateSpec:
    expected: str = "a rate like 20/minute or 5/10s (a count above 0, a slash, a period)"

    def __call__(self, raw: str) -> Rate:
        """'20/minute' -> Rate(20, 60); '5/10s' -> Rate(5, 10)."""
        match = _RATE.match(raw.lower())
        unit = _UNIT_SECONDS.get(match[3]) if match else None
        if unit is None or int(match[1]) == 0 or match[2] == "0":
            raise ValueError
        return Rate(int(match[1]), int(match[2] or 1) * unit)


@dataclass(frozen=True)
class RedisUrl:
    expected: str = "a redis://, rediss:// or unix:// URL"

    def __call__(self, raw: str) -> str:
        parts = urlsplit(raw)
        _ = parts.port  # a malformed port raises ValueError
        scheme = parts.scheme.lower()
        if scheme == "unix":
            if not parts.path:
                raise Invalid("it names no socket")
        elif scheme in ("redis", "rediss"):
            if not parts.hostname:
                raise Invalid("it names no host")
            database = parts.path.strip("/")
            if database and not database.isdigit():
                raise Invalid("its path must be a database number, like /0")
        else:
            raise ValueError
        return raw


def database_url(raw: str | None) -> str:
    """Normalise a DATABASE_URL: Heroku's `postgres://` -> SQLAlchemy + psycopg 3.

    SQLAlchemy dropped the `postgres://` alias, and a bare `postgresql://` means
    psycopg2, which we do not ship; psycopg 3 is what requirements.txt installs.
    """
    if not raw:
        return f"sqlite:///{PROJECT_ROOT / 'var' / 'relay.sqlite3'}"
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", raw)


@dataclass(frozen=True)
class DatabaseUrl:
    expected: str = "a postgres://, postgresql:// or sqlite:/// URL"

    def __call__(self, raw: str) -> str:
        scheme = raw.partition(":")[0].lower()
        if scheme == "sqlite" and raw.startswith("sqlite://"):
            return raw
        if scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
            raise ValueError
        _ = urlsplit(raw).port  # a malformed port raises ValueError
        if not raw.partition("://")[2]:
            raise ValueError
        return database_url(raw)


@dataclass(frozen=True)
class HttpUrl:
    expected: str = "an http:// or https:// URL"

    def __call__(self, raw: str) -> str:
        parts = urlsplit(raw)
        _ = parts.port  # a malformed port raises ValueError
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError
        return raw


@dataclass(frozen=True)
class Text:
    """Text of at least `min_chars` characters (for a secret: ASCII, so as many bytes)."""

    min_chars: int = 1
    visible_ascii: bool = False

    @property
    def expected(self) -> str:
        kind = "visible ASCII characters (no spaces)" if self.visible_ascii else "characters"
        return f"at least {self.min_chars} {kind}"

    def __call__(self, raw: str) -> str:
        if len(raw) < self.min_chars:
            raise ValueError
        if self.visible_ascii and not re.fullmatch(r"[\x21-\x7e]+", raw):
            raise ValueError
        return raw


_PEM = re.compile(
    r"\A-----BEGIN (?P<kind>(?:RSA )?PUBLIC KEY)-----(?P<body>[A-Za-z0-9+/=\s]+)"
    r"-----END (?P=kind)-----\s*\Z"
)


@dataclass(frozen=True)
class PublicKeyPem:
    expected: str = "a PEM public key (-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----)"

    def __call__(self, raw: str) -> str:
        # Config vars often hold a PEM on one line, with its newlines as `\n`.
        pem = raw.replace("\\n", "\n").strip()
        if "PRIVATE KEY" in pem:
            raise Invalid("that is a private key: give the public one")
        match = _PEM.match(pem)
        if match is None:
            raise ValueError
        try:
            der = base64.b64decode("".join(match["body"].split()), validate=True)
        except binascii.Error:
            raise Invalid("its body is not base64") from None
        if not der.startswith(b"\x30"):  # a DER SEQUENCE, as every public key is
            raise Invalid("its body is not a key")
        return pem


_ORIGIN = re.compile(r"\A(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?\Z")


@dataclass(frozen=True)
class Origins:
    expected: str = "comma-separated origins like https://app.example.com (scheme://host[:port])"

    def __call__(self, raw: str) -> tuple[str, ...]:
        origins = []
        # A trailing slash is a common slip when copying an origin from the address bar.
        for item in (part.strip().rstrip("/") for part in raw.split(",")):
            if not item:
                continue
            if item == "*":
                raise Invalid("'*' is not allowed: list the origins")
            match = _ORIGIN.match(item.lower())
            if match is None or (match[3] and not 0 < int(match[3]) < 65536):
                raise Invalid(f"{item!r} is not an origin")
            origins.append(item.lower())
        return tuple(origins)


# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


@dataclass(frozen=True)
class Host:
    """An address to listen on: an IP address or a host name, without a port."""

    expected: str = "an address to listen on, like 127.0.0.1, 0.0.0.0, ::1 or localhost (no port)"

    def __call__(self, raw: str) -> str:
        try:
            return str(ipaddress.ip_address(raw))
        except ValueError:
            pass
        name = raw.lower()
        # A last label of digits only is a mistyped IPv4 address, not a name.
        if len(name) > 253 or not _HOST_NAME.fullmatch(name) or name.rsplit(".", 1)[-1].isdigit():
            raise ValueError
        return name


@dataclass(frozen=True)
class Folder:
    expected: str = "a folder path"

    def __call__(self, raw: str) -> str:
        if Path(raw).exists() and not Path(raw).is_dir():
            raise Invalid("it is a file")
        return raw
