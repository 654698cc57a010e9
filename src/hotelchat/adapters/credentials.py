"""Provider credentials at rest: Twilio auth tokens are stored as Fernet tokens (AES-128-CBC with
an HMAC-SHA256, https://github.com/fernet/spec/blob/master/Spec.md) made with ENCRYPTION_KEYS.

The first key encrypts; every key decrypts (`cryptography`'s MultiFernet). A key is rotated by
putting a new one first: every process can then read both, `hotelchat migrate` and the operator
re-encrypt what they find under an older key, and the old key is dropped once nothing uses it.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hotelchat.config import ConfigError
from hotelchat.domain.errors import Unavailable

MAX_KEYS = 10


class TokenCipher:
    """Encrypts and decrypts provider credentials with Fernet keys (url-safe base64 of 32 bytes,
    e.g. `Fernet.generate_key()`), newest first. Raises `ConfigError` for a malformed key."""

    def __init__(self, keys: Sequence[str]) -> None:
        cleaned = [key.strip() for key in keys if key.strip()]
        if not cleaned:
            raise ConfigError("ENCRYPTION_KEYS holds no key")
        if len(cleaned) > MAX_KEYS:
            raise ConfigError(f"ENCRYPTION_KEYS holds more than {MAX_KEYS} keys")
        fernets = []
        for position, key in enumerate(cleaned, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, binascii.Error):
                raise ConfigError(
                    f"ENCRYPTION_KEYS: key {position} is not a Fernet key (url-safe base64 of "
                    "32 bytes; make one with `hotelchat keys generate`)"
                ) from None
        self._current = fernets[0]
        self._all = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        """A cipher from ENCRYPTION_KEYS' comma-separated keys."""
        return cls(value.split(","))

    def encrypt(self, plaintext: str) -> str:
        """`plaintext` encrypted with the newest key, as text for a `text` column."""
        return self._current.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext of `ciphertext`; raises `Unavailable` (code `credentials_unreadable`)
        when no configured key opens it (a key was dropped too early)."""
        try:
            return self._all.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise _unreadable() from None

    def is_current(self, ciphertext: str) -> bool:
        """Whether `ciphertext` was made with the newest key."""
        try:
            self._current.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: str) -> str:
        """`ciphertext` encrypted again with the newest key; raises `Unavailable` like
        `decrypt`."""
        try:
            return self._all.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise _unreadable() from None


def _unreadable() -> Unavailable:
    return Unavailable(
        "a stored credential cannot be decrypted with ENCRYPTION_KEYS",
        code="credentials_unreadable",
    )


def generate_key() -> str:
    """A new random Fernet key."""
    return Fernet.generate_key().decode()
