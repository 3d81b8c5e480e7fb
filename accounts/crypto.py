"""Encryption of personal data at rest, and keyed hashes for looking it up.

``FIELD_ENCRYPTION_KEY`` holds one or more secrets separated by commas. The first encrypts
and every one decrypts, so a key is rotated by putting the new one first, running
``manage.py rotate_field_keys`` (which re-encrypts and re-hashes every row under the first
key), and then dropping the old one. Each secret is stretched with HKDF into a Fernet key
(AES-128-CBC with HMAC-SHA256) and, separately, into a key for the lookup hashes, so the
stored hash of an ID number never reveals the number and cannot be computed without the key.
"""

import base64
import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class DecryptionError(Exception):
    """A stored value cannot be decrypted with any configured key."""


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        secret.encode()
    )


@lru_cache(maxsize=4)
def _keyring(setting: str) -> tuple[MultiFernet, tuple[bytes, ...]]:
    secrets = [part.strip() for part in setting.split(",") if part.strip()]
    if not secrets:
        raise ValueError("FIELD_ENCRYPTION_KEY is empty")
    fernets = [Fernet(base64.urlsafe_b64encode(_derive(s, b"field-encryption"))) for s in secrets]
    hash_keys = tuple(_derive(s, b"lookup-hash") for s in secrets)
    return MultiFernet(fernets), hash_keys


def _current() -> tuple[MultiFernet, tuple[bytes, ...]]:
    return _keyring(settings.FIELD_ENCRYPTION_KEY)


def encrypt(value: str) -> str:
    return _current()[0].encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current()[0].decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored value cannot be decrypted with the configured keys") from None


def reencrypt(token: str) -> str:
    """The token re-encrypted under the first key (unchanged value)."""
    try:
        return _current()[0].rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored value cannot be decrypted with the configured keys") from None


def lookup_hash(value: str) -> str:
    """The keyed hash stored for lookups, under the first key."""
    return _hash(_current()[1][0], value)


def lookup_hashes(value: str) -> list[str]:
    """The keyed hash under every configured key, to find rows not yet rotated."""
    return [_hash(key, value) for key in _current()[1]]


def _hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
