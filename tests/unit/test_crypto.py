"""Connection-string encryption in the format Ed-Fi ODS/API 7 reads, cross-checked with openssl."""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
from hashlib import sha256

import pytest

from services.rules import crypto
from services.rules.crypto import DecryptionError
from services.rules.errors import PermanentError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CONNECTION_STRING = (
    "host=db.example.org;port=5432;username=ods;password=s3cr;et=;database=EdFi_Ods_Grand_Bend"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _parts(token: str) -> tuple[bytes, bytes, bytes]:
    iv, ciphertext, mac = token.split("|")
    return base64.b64decode(iv), base64.b64decode(ciphertext), base64.b64decode(mac)


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    assert path is not None, "the openssl CLI is required for the independent cross-check"
    return path


def _openssl(openssl: str, *args: str, data: bytes) -> bytes:
    result = subprocess.run([openssl, *args], input=data, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def _openssl_hmac(openssl: str, key: bytes, data: bytes) -> bytes:
    return _openssl(
        openssl,
        "dgst",
        "-sha256",
        "-mac",
        "HMAC",
        "-macopt",
        f"hexkey:{key.hex()}",
        "-binary",
        data=data,
    )


# --- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plaintext",
    [
        CONNECTION_STRING,
        "",
        "x",
        "exactly sixteen!",  # a whole block: PKCS7 adds a full block of padding
        "Ünïcødé – 日本語 – emoji 🎓 – Cyrillic а",
        "long " * 2000,
    ],
    ids=["connection-string", "empty", "one-char", "one-block", "unicode", "long"],
)
def test_encrypted_text_decrypts_to_the_original(plaintext: str) -> None:
    assert crypto.decrypt(crypto.encrypt(plaintext, KEY), KEY) == plaintext


def test_token_is_three_base64_parts_iv_ciphertext_hmac() -> None:
    token = crypto.encrypt(CONNECTION_STRING, KEY)

    parts = token.split("|")
    assert len(parts) == 3
    decoded = [base64.b64decode(p, validate=True) for p in parts]
    iv, ciphertext, mac = decoded
    assert len(iv) == 16
    assert len(ciphertext) > 0
    assert len(ciphertext) % 16 == 0
    assert len(mac) == 32  # HMAC-SHA256


def test_ciphertext_is_padded_to_whole_blocks_even_for_empty_text() -> None:
    _, ciphertext, _ = _parts(crypto.encrypt("", KEY))
    assert len(ciphertext) == 16


def test_encrypting_the_same_text_twice_gives_different_tokens() -> None:
    first = crypto.encrypt(CONNECTION_STRING, KEY)
    second = crypto.encrypt(CONNECTION_STRING, KEY)

    assert first != second
    assert _parts(first)[0] != _parts(second)[0], "the IV must be random per encryption"


def test_plaintext_does_not_appear_in_the_token() -> None:
    token = crypto.encrypt(CONNECTION_STRING, KEY)
    assert "s3cr" not in token
    assert b"s3cr" not in b"".join(_parts(token))


# --- refusals ----------------------------------------------------------------------------------


def test_wrong_key_is_refused() -> None:
    token = crypto.encrypt(CONNECTION_STRING, KEY)
    with pytest.raises(DecryptionError):
        crypto.decrypt(token, OTHER_KEY)


def test_tampered_ciphertext_is_refused() -> None:
    iv, ciphertext, mac = _parts(crypto.encrypt(CONNECTION_STRING, KEY))
    altered = bytes([ciphertext[0] ^ 0x01]) + ciphertext[1:]
    with pytest.raises(DecryptionError):
        crypto.decrypt("|".join(_b64(p) for p in (iv, altered, mac)), KEY)


def test_truncated_ciphertext_is_refused() -> None:
    iv, ciphertext, mac = _parts(crypto.encrypt(CONNECTION_STRING, KEY))
    with pytest.raises(DecryptionError):
        crypto.decrypt("|".join(_b64(p) for p in (iv, ciphertext[:-16], mac)), KEY)


def test_tampered_hmac_is_refused() -> None:
    iv, ciphertext, mac = _parts(crypto.encrypt(CONNECTION_STRING, KEY))
    altered = mac[:-1] + bytes([mac[-1] ^ 0x80])
    with pytest.raises(DecryptionError):
        crypto.decrypt("|".join(_b64(p) for p in (iv, ciphertext, altered)), KEY)


def test_iv_of_the_wrong_length_is_refused() -> None:
    _, ciphertext, mac = _parts(crypto.encrypt(CONNECTION_STRING, KEY))
    with pytest.raises(DecryptionError):
        crypto.decrypt("|".join(_b64(p) for p in (b"\x00" * 8, ciphertext, mac)), KEY)


@pytest.mark.parametrize("parts", [1, 2, 4])
def test_wrong_number_of_parts_is_refused(parts: int) -> None:
    pieces = crypto.encrypt(CONNECTION_STRING, KEY).split("|")
    token = "|".join((pieces * 2)[:parts])
    with pytest.raises(DecryptionError):
        crypto.decrypt(token, KEY)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64!|AAAA|AAAA",
        "AAAAAAAAAAAAAAAAAAAAAA==|***|AAAA",
        "AAAAAAAAAAAAAAAAAAAAAA==|AAAAAAAAAAAAAAAAAAAAAA==|é",
        "AAAAAAAAAAAAAAAAAAAAAA==|AAAAAAAAAAAAAAAAAAAAAA==|AAA",  # bad padding of the base64
    ],
    ids=["empty", "iv-not-base64", "ciphertext-not-base64", "non-ascii", "truncated-base64"],
)
def test_value_that_is_not_a_token_is_refused(token: str) -> None:
    with pytest.raises(DecryptionError):
        crypto.decrypt(token, KEY)


def test_authentic_but_partial_block_ciphertext_is_refused_as_decryption_error() -> None:
    iv = bytes(16)
    ciphertext = bytes(15)
    mac = hmac.new(KEY, ciphertext, sha256).digest()
    with pytest.raises(DecryptionError):
        crypto.decrypt("|".join(_b64(p) for p in (iv, ciphertext, mac)), KEY)


def test_decryption_error_is_a_permanent_error() -> None:
    assert issubclass(DecryptionError, PermanentError)


# --- independent cross-check with the openssl CLI ---------------------------------------------


@pytest.mark.parametrize(
    "plaintext", [CONNECTION_STRING, "", "exactly sixteen!", "Ünïcødé 日本語 🎓"]
)
def test_value_encrypted_by_openssl_decrypts(openssl: str, plaintext: str) -> None:
    key = os.urandom(32)
    iv = os.urandom(16)
    ciphertext = _openssl(
        openssl,
        "enc",
        "-aes-256-cbc",
        "-K",
        key.hex(),
        "-iv",
        iv.hex(),
        data=plaintext.encode("utf-8"),
    )
    mac = _openssl_hmac(openssl, key, ciphertext)
    token = f"{_b64(iv)}|{_b64(ciphertext)}|{_b64(mac)}"

    assert crypto.decrypt(token, key) == plaintext


def test_value_encrypted_by_openssl_with_another_key_is_refused(openssl: str) -> None:
    key = os.urandom(32)
    iv = os.urandom(16)
    ciphertext = _openssl(
        openssl, "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", iv.hex(), data=b"secret"
    )
    token = f"{_b64(iv)}|{_b64(ciphertext)}|{_b64(_openssl_hmac(openssl, key, ciphertext))}"

    with pytest.raises(DecryptionError):
        crypto.decrypt(token, os.urandom(32))


@pytest.mark.parametrize("plaintext", [CONNECTION_STRING, "", "Ünïcødé 日本語 🎓"])
def test_openssl_decrypts_what_encrypt_produces(openssl: str, plaintext: str) -> None:
    key = os.urandom(32)
    iv, ciphertext, mac = _parts(crypto.encrypt(plaintext, key))

    decrypted = _openssl(
        openssl, "enc", "-d", "-aes-256-cbc", "-K", key.hex(), "-iv", iv.hex(), data=ciphertext
    )
    assert decrypted.decode("utf-8") == plaintext
    assert mac == _openssl_hmac(openssl, key, ciphertext), "HMAC must be over the ciphertext"
