"""API keys of rollout servers: making them, and checking the ``Authorization`` header.

Written once for both sides of the protocol (the server checks trainers' inits, the workbench's
local trainer checks servers' callbacks).
"""

from __future__ import annotations

import hmac
import secrets

#: Prefix of generated rollout-server API keys.
API_KEY_PREFIX = "osm_rollout_"


def generate_api_key() -> str:
    """A new rollout-server key: ``osm_rollout_`` + 32 random url-safe bytes (55 characters)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def validate_api_key(provided: str | None, expected: str) -> bool:
    """Whether ``provided`` equals ``expected``, compared in constant time (None: False)."""
    if provided is None:
        return False
    return hmac.compare_digest(provided, expected)


def bearer_token(header: str | None) -> str | None:
    """The key an ``Authorization`` header carries: ``Bearer <key>`` (any case) or the bare key."""
    header = (header or "").strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return rest.strip()
    return header


def header_matches_key(header: str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header (as a server receives it) carries ``api_key``.

    Header values arrive latin-1 decoded: encoding back gives the raw bytes a client sent as
    UTF-8. Comparing bytes in constant time also never raises on non-ASCII input.
    """
    presented = bearer_token(header)
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("latin-1", "replace"), api_key.encode("utf-8"))
