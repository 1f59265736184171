"""Card keys at rest: AES-256-GCM with a key from the environment or a file, and a keyed hash for uniqueness.

The key never comes from the YAML. The keyed hash (HMAC-SHA256 under a subkey) lets the database enforce
"one delivery per card key" without ever holding a key in plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from suppliers.taxonomy import Card

ENV_VAR = "FULFIL_CARD_KEY"
_NONCE = 12
_IDENTITY_INFO = b"fulfil buyer identity v1"


class CardKeyError(Exception):
    """No usable card encryption key."""


def generate_key() -> str:
    """A new key as operators store it: 32 random bytes, urlsafe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _decode_key(text: str, source: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode())
    except (ValueError, TypeError) as exc:
        raise CardKeyError(f"{source}: the card key is not base64 ({exc})") from exc
    if len(raw) != 32:
        raise CardKeyError(f"{source}: the card key must be 32 bytes (base64), got {len(raw)}")
    return raw


def load_card_key(key_file: str | None, environ: Mapping[str, str] | None = None) -> bytes:
    """FULFIL_CARD_KEY wins over `security.card_key_file`; neither means refuse to start."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR):
        return _decode_key(environ[ENV_VAR], ENV_VAR)
    if key_file:
        try:
            text = Path(key_file).read_text(encoding="ascii")
        except OSError as exc:
            raise CardKeyError(f"security.card_key_file: cannot read {key_file} ({exc.strerror})") from exc
        return _decode_key(text, key_file)
    raise CardKeyError(
        f"no card encryption key: set {ENV_VAR} or security.card_key_file "
        "(create one with `fulfil keygen > /etc/fulfil/card.key`)"
    )


def _identity_subkey(card_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_IDENTITY_INFO).derive(card_key)


def _identity_mac(subkey: bytes, kind: str, value: str) -> str:
    norm = value.strip()
    if kind == "contact":
        norm = norm.lower()
    return hmac.new(subkey, f"{kind}:{norm}".encode(), hashlib.sha256).hexdigest()


def identity_hash(card_key: bytes, kind: str, value: str) -> str:
    """Keyed hash of a buyer identity for matching without storing it readable: HMAC-SHA256 under an
    HKDF-SHA256 subkey of the card key (info=_IDENTITY_INFO, no salt, 32 bytes), over f"{kind}:{norm}",
    hex. `norm` is value.strip(), lower-cased for kind == "contact"."""
    return _identity_mac(_identity_subkey(card_key), kind, value)


class CardCipher:
    """Encrypts single strings (card numbers, passwords) and hashes whole cards."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise CardKeyError("the card key must be 32 bytes")
        self._aead = AESGCM(hashlib.sha256(b"fulfil-enc\x00" + key).digest())
        self._mac_key = hashlib.sha256(b"fulfil-mac\x00" + key).digest()
        # Derived once: hashing every intake's identities must not run HKDF each time.
        self._identity_key = _identity_subkey(key)

    def identity_hash(self, kind: str, value: str) -> str:
        """`identity_hash(card_key, kind, value)` with the subkey derived at construction."""
        return _identity_mac(self._identity_key, kind, value)

    def encrypt(self, plaintext: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), None)

    def decrypt(self, blob: bytes) -> str:
        return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], None).decode("utf-8")

    def fingerprint(self, card: Card) -> str:
        """Keyed hash of a card's identity: equal cards, equal fingerprints; reveals nothing."""
        normal = card.number.strip() + "\x00" + card.password.strip()
        return hmac.new(self._mac_key, normal.encode("utf-8"), hashlib.sha256).hexdigest()


def mask(secret: str) -> str:
    """What logs and default output show of a key: its length and last two characters at most."""
    if not secret:
        return ""
    if len(secret) <= 6:
        return "*" * len(secret)
    return "*" * (len(secret) - 2) + secret[-2:]
