"""RFC 3394 AES key wrap and the Security setup key_transfer parameter (notes §8).

key_transfer (class 64, method 2) takes ``array`` of ``structure { enum key_id,
octet-string wrapped_key }``; each key is wrapped under the master key (KEK), default IV
A6A6A6A6A6A6A6A6, so a 16-byte key travels as 24 bytes.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from layers.fields import decode_length, encode_length

from .gcm import SecurityError
from .secret import SecretKey, raw

__all__ = [
    "KEY_ID_NAMES", "KeyTransferFormatError", "UnwrapError", "build_key_transfer",
    "key_id_name", "parse_key_transfer", "unwrap_key", "unwrap_key_transfer", "wrap_key",
]

#: key_id enumeration of key_transfer (GlobalKeyType).
KEY_ID_NAMES: dict[int, str] = {
    0: "global-unicast-encryption-key",
    1: "global-broadcast-encryption-key",
    2: "authentication-key",
    3: "master-key",
}

_ARRAY, _STRUCTURE, _ENUM, _OCTET_STRING = 0x01, 0x02, 0x16, 0x09


class UnwrapError(SecurityError):
    """The wrapped key does not unwrap under this KEK (integrity check failed)."""


class KeyTransferFormatError(ValueError):
    """The key_transfer parameter is not array of structure {enum, octet-string}."""


def key_id_name(key_id: int) -> str:
    """Name of a key_transfer key_id, or ``key-id-N`` for an unknown value."""
    return KEY_ID_NAMES.get(key_id, f"key-id-{key_id}")


def wrap_key(kek: SecretKey | bytes, key: SecretKey | bytes) -> bytes:
    """RFC 3394 wrap of `key` under `kek`."""
    return aes_key_wrap(raw(kek), raw(key))


def unwrap_key(kek: SecretKey | bytes, wrapped: bytes) -> bytes:
    """RFC 3394 unwrap; raises `UnwrapError` when the integrity check fails."""
    if len(wrapped) < 24 or len(wrapped) % 8:
        raise UnwrapError(f"wrapped key must be a multiple of 8 bytes, at least 24; "
                          f"got {len(wrapped)}")
    try:
        return aes_key_unwrap(raw(kek), bytes(wrapped))
    except InvalidUnwrap:
        name = kek.name if isinstance(kek, SecretKey) else "the given KEK"
        raise UnwrapError(f"key does not unwrap under {name}") from None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def byte(self, expected: int, what: str) -> None:
        if self.pos >= len(self.data):
            raise KeyTransferFormatError(f"truncated before {what} at offset {self.pos}")
        got = self.data[self.pos]
        if got != expected:
            raise KeyTransferFormatError(
                f"expected {what} (0x{expected:02x}) at offset {self.pos}, found 0x{got:02x}")
        self.pos += 1

    def length(self, what: str) -> int:
        try:
            n, used = decode_length(self.data[self.pos:])
        except ValueError as exc:
            raise KeyTransferFormatError(f"{what} at offset {self.pos}: {exc}") from None
        self.pos += used
        return n

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise KeyTransferFormatError(
                f"{what}: {n} bytes declared at offset {self.pos}, "
                f"{len(self.data) - self.pos} present")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def parse_key_transfer(data: bytes) -> list[tuple[int, bytes]]:
    """(key_id, wrapped key) pairs of a key_transfer method parameter (A-XDR encoded)."""
    r = _Reader(data)
    r.byte(_ARRAY, "array")
    count = r.length("array count")
    out: list[tuple[int, bytes]] = []
    for i in range(count):
        r.byte(_STRUCTURE, f"structure {i}")
        if r.length(f"structure {i} size") != 2:
            raise KeyTransferFormatError(f"structure {i} must have 2 elements")
        r.byte(_ENUM, f"enum key_id of structure {i}")
        key_id = r.take(1, f"key_id of structure {i}")[0]
        r.byte(_OCTET_STRING, f"octet-string of structure {i}")
        wrapped = r.take(r.length(f"wrapped key length of structure {i}"),
                         f"wrapped key of structure {i}")
        out.append((key_id, wrapped))
    if r.pos != len(r.data):
        raise KeyTransferFormatError(f"{len(r.data) - r.pos} bytes after the array")
    return out


def build_key_transfer(entries: list[tuple[int, bytes]]) -> bytes:
    """Encode (key_id, wrapped key) pairs as a key_transfer method parameter."""
    out = bytearray([_ARRAY]) + encode_length(len(entries))
    for key_id, wrapped in entries:
        out += bytes([_STRUCTURE, 2, _ENUM, key_id, _OCTET_STRING])
        out += encode_length(len(wrapped)) + wrapped
    return bytes(out)


def unwrap_key_transfer(kek: SecretKey | bytes, data: bytes) -> list[tuple[int, SecretKey]]:
    """Parse a key_transfer parameter and unwrap every key under `kek`; each result is named
    after its key_id (``key_transfer/global-unicast-encryption-key``)."""
    return [(key_id, SecretKey(unwrap_key(kek, wrapped), f"key_transfer/{key_id_name(key_id)}"))
            for key_id, wrapped in parse_key_transfer(data)]
