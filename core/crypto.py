"""AES-256-GCM encryption of field values with rotating keys.

A ciphertext is `enc1:<key id>:<base64(nonce + ciphertext + tag)>`: a fresh 12-byte nonce
per value, the id of the key that encrypted it (the first 8 hex digits of the key's SHA-256)
and the GCM tag, which detects any change. The version and key id are authenticated as
associated data, so they cannot be swapped either. Keys come from `FIELD_ENCRYPTION_KEYS`
(base64 of 32 bytes each): the first encrypts, all decrypt.
"""

import base64
import binascii
import hashlib
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

PREFIX = "enc1"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A stored value cannot be decrypted: unknown key, malformed, or tampered with."""


class KeyRing:
    """The configured keys, by id; the first one encrypts."""

    def __init__(self, encoded_keys: list[str] | tuple[str, ...]) -> None:
        if not encoded_keys:
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must list at least one key")
        self._keys: dict[str, AESGCM] = {}
        self.key_ids: list[str] = []
        for encoded in encoded_keys:
            try:
                raw = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds a non-base64 key") from exc
            if len(raw) != 32:
                raise ImproperlyConfigured(
                    "FIELD_ENCRYPTION_KEYS keys must be 32 bytes (AES-256), base64 encoded"
                )
            key_id = hashlib.sha256(raw).hexdigest()[:8]
            if key_id not in self._keys:
                self._keys[key_id] = AESGCM(raw)
                self.key_ids.append(key_id)

    @property
    def primary_key_id(self) -> str:
        return self.key_ids[0]

    def encrypt(self, plaintext: bytes) -> str:
        key_id = self.primary_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[key_id].encrypt(nonce, plaintext, _aad(key_id))
        return f"{PREFIX}:{key_id}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, token: str) -> bytes:
        key_id, blob = parse_token(token)
        aead = self._keys.get(key_id)
        if aead is None:
            raise DecryptionError(f"value encrypted with unknown key id {key_id}")
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(key_id))
        except InvalidTag as exc:
            raise DecryptionError("value failed authentication (tampered or corrupt)") from exc


def _aad(key_id: str) -> bytes:
    return f"{PREFIX}:{key_id}".encode("ascii")


def parse_token(token: str) -> tuple[str, bytes]:
    """Split a stored ciphertext into its key id and raw bytes."""
    try:
        prefix, key_id, payload = token.split(":", 2)
        blob = base64.b64decode(payload, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise DecryptionError("malformed encrypted value") from exc
    if prefix != PREFIX or len(blob) < NONCE_BYTES + 16:
        raise DecryptionError("malformed encrypted value")
    return key_id, blob


def token_key_id(token: str) -> str:
    return parse_token(token)[0]


@lru_cache(maxsize=4)
def _keyring_for(keys: tuple[str, ...]) -> KeyRing:
    return KeyRing(keys)


def keyring() -> KeyRing:
    """Return the key ring for the current `FIELD_ENCRYPTION_KEYS`."""
    return _keyring_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


def generate_key() -> str:
    """Return a new random key, base64 encoded, for `FIELD_ENCRYPTION_KEYS`."""
    return base64.b64encode(os.urandom(32)).decode("ascii")
