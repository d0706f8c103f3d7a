"""`SecretKey`: key bytes that never show themselves in a repr, str, log line or exception."""

from __future__ import annotations

import hashlib
import hmac
import re

_HEX_SEPARATORS = re.compile(r"[\s:_-]")
_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]*")


def parse_key_material(spec: str) -> bytes:
    """Bytes of a key written as hex (spaces, ``:``, ``-``, ``_`` and a ``0x`` prefix tolerated)
    or as ``text:ASCII``.

    Raises ValueError with a message that describes the problem without quoting the value.
    """
    if spec.startswith("text:"):
        text = spec[5:]
        if not text:
            raise ValueError("empty text: value")
        try:
            return text.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("text: value is not ASCII") from None
    digits = _HEX_SEPARATORS.sub("", spec)
    if digits[:2] in ("0x", "0X"):
        digits = digits[2:]
    if not digits:
        raise ValueError("empty value")
    if not _HEX_DIGITS.fullmatch(digits):
        raise ValueError("not valid hex (use hex digits or text:ASCII)")
    if len(digits) % 2:
        raise ValueError(f"odd number of hex digits ({len(digits)})")
    return bytes.fromhex(digits)


class SecretKey:
    """Key bytes with a name. `repr`/`str` show the name, length and a fingerprint only.

    `.value` hands the bytes to crypto code; `fingerprint` is the first 4 bytes of the
    SHA-256 of the key, in hex, so two listings can tell keys apart without revealing them.
    """

    __slots__ = ("_value", "name")

    def __init__(self, value: bytes | bytearray | memoryview, name: str = "key") -> None:
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"key {name!r}: expected bytes, got {type(value).__name__}")
        self._value = bytes(value)
        self.name = name

    @classmethod
    def from_spec(cls, spec: str, name: str = "key") -> SecretKey:
        """Build from hex or ``text:ASCII`` (see `parse_key_material`)."""
        try:
            return cls(parse_key_material(spec), name)
        except ValueError as exc:
            raise ValueError(f"key {name!r}: {exc}") from None

    @property
    def value(self) -> bytes:
        return self._value

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self._value).digest()[:4].hex()

    def renamed(self, name: str) -> SecretKey:
        """The same bytes under another name."""
        return SecretKey(self._value, name)

    def __len__(self) -> int:
        return len(self._value)

    def __bytes__(self) -> bytes:
        return self._value

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretKey):
            return hmac.compare_digest(self._value, other._value)
        if isinstance(other, (bytes, bytearray)):
            return hmac.compare_digest(self._value, bytes(other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"SecretKey({self.name!r}, {len(self._value)} bytes, sha256:{self.fingerprint})"

    def __str__(self) -> str:
        return f"{self.name} [{self.fingerprint}]"


def raw(key: SecretKey | bytes | bytearray | memoryview) -> bytes:
    """Bytes of a key given either as `SecretKey` or as bytes."""
    return key.value if isinstance(key, SecretKey) else bytes(key)
