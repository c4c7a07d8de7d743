"""CPR numbers (the Danish civil registration number FUT and PHD consumers know a citizen by),
sealed at rest.

A CPR number is kept only in ``patient_cpr`` (migration 0509), sealed with AES-GCM
(``cryptography``) under a key from the settings (``NEARCARE_CPR_KEY`` or
``NEARCARE_CPR_KEY_FILE``: 32 random bytes, base64). The citizen's id is the associated data, so a
sealed number copied onto another citizen's row does not open. Retired keys
(``NEARCARE_CPR_RETIRED_KEYS``, comma-separated) still open what they sealed; each row names the
key it was sealed with (the first 8 hex digits of the key's SHA-256).

The number is opened only to be put into the PHD export's Patient (``urn:oid:1.2.208.176.1.2``),
which is audited like any look at the citizen's data. It is never logged, never put in an error
text, an audit detail or a metric: :func:`mask` replaces anything shaped like one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.fhir.export import FhirExportError

# DDMMYY then four digits, with or without the dash, not inside a longer run of digits.
_CPR = re.compile(r"(?<!\d)([0-3]\d[01]\d\d\d)-?(\d{4})(?!\d)")


class CprError(FhirExportError):
    """A CPR number or key that cannot be used (the text never contains the number)."""


def mask(text: str) -> str:
    """``text`` with anything shaped like a CPR number replaced by ``<cpr>``."""
    return _CPR.sub("<cpr>", text)


def normalise(text: str) -> str:
    """The ten digits of a CPR number written ``DDMMYY-SSSS`` or ``DDMMYYSSSS``; the date part
    must be a calendar date (no modulus 11 check: numbers issued since 2007 need not pass it)."""
    m = re.fullmatch(r"\s*(\d{6})-?(\d{4})\s*", text)
    if not m:
        raise CprError("a CPR number is ten digits, DDMMYY-SSSS")
    digits = m.group(1) + m.group(2)
    try:
        date(2000 + int(digits[4:6]), int(digits[2:4]), int(digits[0:2]))
    except ValueError:
        raise CprError("the first six digits of a CPR number are a date (DDMMYY)") from None
    return digits


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _key(text: str, name: str) -> bytes:
    try:
        t = text.strip().translate(str.maketrans("-_", "+/"))
        raw = base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CprError(f"{name} is not base64") from None
    if len(raw) != 32:
        raise CprError(f"{name} must be 32 bytes (base64 of 32 random bytes), not {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class CprKeys:
    """The key that seals (``current``) and the retired ones that still open."""

    current: bytes = field(repr=False)
    retired: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def key_id(self) -> str:
        return _key_id(self.current)

    def _by_id(self, key_id: str) -> bytes:
        for k in (self.current, *self.retired):
            if _key_id(k) == key_id:
                return k
        raise CprError(f"the CPR number was sealed with key {key_id}, which is not configured")

    @staticmethod
    def generate() -> str:
        """A new key, as ``NEARCARE_CPR_KEY`` takes it."""
        return base64.urlsafe_b64encode(os.urandom(32)).decode()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CprKeys | None:
        """From ``NEARCARE_CPR_KEY`` / ``NEARCARE_CPR_KEY_FILE`` and ``NEARCARE_CPR_RETIRED_KEYS``;
        None where no key is configured."""
        text = env.get("NEARCARE_CPR_KEY", "").strip()
        path = env.get("NEARCARE_CPR_KEY_FILE", "").strip()
        if path:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read().strip()
            except OSError as exc:
                raise CprError(f"NEARCARE_CPR_KEY_FILE cannot be read: {exc.strerror}") from exc
        if not text:
            return None
        retired = tuple(_key(k, "NEARCARE_CPR_RETIRED_KEYS") for k in
                        env.get("NEARCARE_CPR_RETIRED_KEYS", "").split(",") if k.strip())
        return cls(_key(text, "NEARCARE_CPR_KEY"), retired)


@cache
def keys_from_environment() -> CprKeys | None:
    """The process's keys (read once, on first use)."""
    return CprKeys.from_env(os.environ)


def _aad(patient_id: int) -> bytes:
    return f"nearcare-cpr:patient:{patient_id}".encode()


def seal(keys: CprKeys, *, patient_id: int, cpr: str) -> tuple[str, bytes]:
    """(key id, nonce + ciphertext) of a normalised CPR number for ``patient_id``."""
    nonce = os.urandom(12)
    return keys.key_id, nonce + AESGCM(keys.current).encrypt(nonce, normalise(cpr).encode(), _aad(patient_id))


def unseal(keys: CprKeys, *, patient_id: int, key_id: str, sealed: bytes) -> str:
    try:
        return AESGCM(keys._by_id(key_id)).decrypt(sealed[:12], sealed[12:], _aad(patient_id)).decode()
    except InvalidTag:
        raise CprError("the sealed CPR number does not open for this citizen with this key") from None


def store_cpr(conn: psycopg.Connection[Any], keys: CprKeys, *, patient_id: int, cpr: str) -> None:
    """Keep (or replace) the citizen's CPR number, sealed."""
    key_id, sealed = seal(keys, patient_id=patient_id, cpr=cpr)
    conn.execute(
        """INSERT INTO patient_cpr (patient_id, key_id, sealed) VALUES (%s, %s, %s)
           ON CONFLICT (patient_id) DO UPDATE SET key_id = EXCLUDED.key_id, sealed = EXCLUDED.sealed,
               stored_at = now()""",
        (patient_id, key_id, sealed),
    )


def cpr_of(conn: psycopg.Connection[Any], keys: CprKeys | None, *, patient_id: int) -> str | None:
    """The citizen's CPR number, or None if none is kept. A kept number with no key to open it
    is an error, not an absent number."""
    row = conn.execute("SELECT key_id, sealed FROM patient_cpr WHERE patient_id = %s", (patient_id,)).fetchone()
    if row is None:
        return None
    if keys is None:
        raise CprError("a CPR number is kept for this citizen, but NEARCARE_CPR_KEY is not set")
    return unseal(keys, patient_id=patient_id, key_id=str(row[0]), sealed=bytes(row[1]))


def formatted(cpr: str) -> str:
    """``DDMMYY-SSSS``."""
    digits = normalise(cpr)
    return f"{digits[:6]}-{digits[6:]}"
