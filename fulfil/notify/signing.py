"""Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over "{id}.{timestamp}.{body}".

A secret is `whsec_<base64>`; during a rotation the config holds several, space-separated, and every request
carries one `v1,<signature>` per secret, space-separated, so a receiver with either secret accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def secret_keys(secret: str) -> list[bytes]:
    """The raw keys of a configured secret (config validation has checked the format)."""
    return [base64.b64decode(part.removeprefix("whsec_")) for part in secret.split()]


def sign(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode() for key in keys)


def headers(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(keys, msg_id, timestamp, body),
        "content-type": "application/json",
    }
