"""Buyer identities: how a value is normalised before hashing, how it is shown (masked), how an operator
names one on the command line (`contact:b@example.com`, `ip:203.0.113.9`, `account:10001`)."""

from __future__ import annotations

import ipaddress

from fulfil.config import IDENTITY_KINDS


class IdentityError(ValueError):
    """An identity the operator typed cannot be read."""


def normalize(kind: str, value: str) -> str:
    """The form that is hashed: an IP address in its canonical text (so 203.0.113.09 is not a new buyer),
    anything else stripped (`identity_hash` lower-cases contacts itself)."""
    text = value.strip()
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text
    return text


def ip_error(value: str) -> str | None:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return "ip is not an IPv4 or IPv6 address"
    return None


def mask_contact(contact: str | None) -> str | None:
    """b***@example.com; 138****5678; short values all but the first character."""
    if contact is None:
        return None
    text = contact.strip()
    if "@" in text:
        local, _, domain = text.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if len(text) >= 7:
        return f"{text[:3]}{'*' * (len(text) - 7)}{text[-4:]}" if len(text) > 7 else f"{text[:3]}****"
    return f"{text[:1]}***" if text else text


def mask_identity(kind: str, value: str | None) -> str:
    """What outputs and logs show of a buyer identity."""
    if value is None:
        return "-"
    text = value.strip()
    if kind == "contact":
        return mask_contact(text) or "-"
    if kind == "ip":
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return "*" * len(text)
        if address.version == 4:
            return ".".join(text.split(".")[:2]) + ".*.*"
        return ":".join(address.exploded.split(":")[:2]) + ":*"
    if len(text) <= 4:
        return text[:1] + "***"
    return f"{text[:2]}***{text[-2:]}"


def parse_identity(text: str) -> tuple[str, str]:
    """`kind:value` -> (kind, normalised value); a bare e-mail address is a contact."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in IDENTITY_KINDS:
        if "@" in text and ":" not in text:
            return "contact", text.strip()
        raise IdentityError(
            f"name an identity as KIND:VALUE with KIND one of {', '.join(IDENTITY_KINDS)} "
            "(e.g. contact:b@example.com, account:10001)"
        )
    if not value.strip():
        raise IdentityError(f"{kind}: the value is empty")
    if kind == "ip" and ip_error(value):
        raise IdentityError(f"{kind}: {value.strip()[:40]!r} is not an IP address")
    return kind, normalize(kind, value)
