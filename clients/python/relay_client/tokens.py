"""The caller's token: a fixed one, or one a provider gives and gives again.

relay checks JWTs signed by the team's own backend (API.md, Access
control). The client never verifies one: it only reads `exp` from the
payload to ask the provider for a new token before the old one runs out,
and asks again when the server answers 401. A token that is not a JWT, or
has no `exp`, is used until the server refuses it.

"Before it runs out" is a quarter of the token's lifetime (as the client
saw it) or `margin_seconds`, whichever is less, so a five-minute token is
renewed 30 s early and a three-second one 0.75 s early, never on every
request.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable

TokenProvider = Callable[[], "str | Awaitable[str]"]


def expires_at(token: str) -> float | None:
    """The `exp` claim of a JWT, unverified, or None when there is none to read."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


class Tokens:
    """The token in use, and whether to ask the provider for another before a request."""

    def __init__(
        self,
        token: str | None = None,
        provider: TokenProvider | None = None,
        *,
        margin_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if token is not None and provider is not None:
            raise ValueError("pass token or token_provider, not both")
        self.provider = provider
        self.margin_seconds = margin_seconds
        self._clock = clock
        self.current: str | None = None
        self._renew_at: float | None = None
        if token is not None:
            self.store(token)

    def due(self) -> bool:
        """True when the provider should be asked before the next request."""
        if self.provider is None:
            return False
        if self.current is None:
            return True
        return self._renew_at is not None and self._clock() >= self._renew_at

    def store(self, token: str) -> str:
        if not isinstance(token, str) or not token:
            raise TypeError("a token provider must return a non-empty string")
        now = self._clock()
        self.current = token
        exp = expires_at(token)
        if exp is None:
            self._renew_at = None
        else:
            margin = min(self.margin_seconds, max(exp - now, 0.0) / 4)
            self._renew_at = exp - margin
        return token
