"""acg-faka "shared shop" signing: one implementation for the adapter and the simulator.

Rule (/work/shared/protocols/acg-faka-shared.md): drop `sign` and empty-string values, sort by key, join
`k=v` with `&` (values as received, URL-decoded), append `&key=` + app_key, MD5, lowercase hex.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign_text(params: Mapping[str, str]) -> str:
    """The text that gets hashed, without the key: `k1=v1&k2=v2` over the non-empty, non-sign params."""
    return "&".join(f"{key}={params[key]}" for key in sorted(params) if key != "sign" and params[key] != "")


def sign(params: Mapping[str, str], app_key: str) -> str:
    """The `sign` field for a request carrying `params` (a `sign` already in `params` is ignored)."""
    return hashlib.md5((sign_text(params) + "&key=" + app_key).encode("utf-8")).hexdigest()


def verify(params: Mapping[str, str], app_key: str) -> bool:
    """True when `params["sign"]` is the signature of the other params (constant-time compare)."""
    given = params.get("sign")
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.lower().encode("utf-8"), sign(params, app_key).encode("utf-8"))


def signed(params: Mapping[str, str], app_key: str) -> dict[str, str]:
    """A copy of `params` with its `sign` added: the form body to POST."""
    body = {key: value for key, value in params.items() if key != "sign"}
    body["sign"] = sign(body, app_key)
    return body
