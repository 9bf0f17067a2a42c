"""Connection-string encryption exactly as Ed-Fi ODS/API 7 reads it.

AES-256-CBC with PKCS7 padding and a random 16-byte IV, then HMAC-SHA256 over the
ciphertext bytes with the same 32-byte key; stored as
``base64(iv) + "|" + base64(ciphertext) + "|" + base64(hmac)``.
"""

from __future__ import annotations

import base64
import hmac
import os
from hashlib import sha256

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from services.rules.errors import PermanentError

IV_BYTES = 16


class DecryptionError(PermanentError):
    """The value is not a connection string encrypted with this key."""


KEY_BYTES = 32


def _check_key(key: bytes) -> None:
    # AES would accept 16 or 24 bytes too; the ODS/API uses AES-256 only.
    if len(key) != KEY_BYTES:
        raise ValueError(f"the key must be {KEY_BYTES} bytes, not {len(key)}")


def encrypt(plaintext: str, key: bytes) -> str:
    _check_key(key)
    iv = os.urandom(IV_BYTES)
    padder = padding.PKCS7(algorithms.AES.block_size).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    mac = hmac.new(key, ciphertext, sha256).digest()
    return "|".join(base64.b64encode(part).decode("ascii") for part in (iv, ciphertext, mac))


def decrypt(token: str, key: bytes) -> str:
    _check_key(key)
    parts = token.split("|")
    if len(parts) != 3:
        raise DecryptionError("expected three '|'-separated base64 parts")
    try:
        iv, ciphertext, mac = (base64.b64decode(p, validate=True) for p in parts)
    except ValueError as exc:
        raise DecryptionError("a part is not valid base64") from exc
    if len(iv) != IV_BYTES:
        raise DecryptionError("the IV is not 16 bytes")
    if not hmac.compare_digest(mac, hmac.new(key, ciphertext, sha256).digest()):
        raise DecryptionError("the HMAC does not match: wrong key or altered value")
    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except ValueError as exc:  # partial block, bad padding, or not UTF-8
        raise DecryptionError(f"the ciphertext does not decrypt: {exc}") from exc
