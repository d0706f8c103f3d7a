"""Field types shared by the DLMS layers: A-XDR/BER lengths and length-prefixed values."""

from __future__ import annotations

from typing import Any

from scapy.fields import Field, FieldLenField, PacketLenField, StrLenField
from scapy.packet import Packet

from .packet import PacketElements


def field_value(pkt: Packet, name: str) -> Any:
    """A field's value without Scapy's attribute machinery (for code that runs per packet)."""
    fields = pkt.fields
    return fields[name] if name in fields else pkt.default_fields.get(name)


def encode_length(n: int) -> bytes:
    """Encode a length the way A-XDR and BER definite-length both do it."""
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(body) == 3:
        body = b"\x00" + body
    return bytes([0x80 | len(body)]) + body


def decode_length(s: bytes) -> tuple[int, int]:
    """Return (length, bytes consumed); raises ValueError on a truncated or impossible prefix."""
    if not s:
        raise ValueError("length prefix missing")
    first = s[0]
    if first < 0x80:
        return first, 1
    n = first & 0x7F
    if n == 0 or n > 4 or len(s) < 1 + n:
        raise ValueError(f"bad length prefix {s[: 1 + n].hex()}")
    return int.from_bytes(s[1 : 1 + n], "big"), 1 + n


class VarLenField(FieldLenField):
    """A-XDR / BER length prefix (1 byte below 0x80, else 0x81..0x84 and 1..4 bytes).

    Like FieldLenField, it computes itself from `length_of` or `count_of` on build.
    """

    def __init__(self, name: str, default: int | None, length_of: str | None = None,
                 count_of: str | None = None, adjust: Any = lambda pkt, x: x) -> None:
        super().__init__(name, default, length_of=length_of, count_of=count_of, fmt="B",
                         adjust=adjust)

    def addfield(self, pkt: Packet, s: bytes, val: int | None) -> bytes:
        return s + encode_length(self.i2m(pkt, val))

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int]:
        n, used = decode_length(s)
        return s[used:], n

    def i2len(self, pkt: Packet, x: Any) -> int:
        return len(encode_length(self.i2m(pkt, x)))


class CountField(VarLenField):
    """A-XDR `SEQUENCE OF` element count (same encoding as a length)."""


def length_prefixed(name: str, default: bytes | None = b"") -> list[Field]:
    """Fields for an A-XDR OCTET STRING: a length prefix, then the bytes."""
    return [
        VarLenField(f"{name}_length", None, length_of=name),
        OctetsField(name, default, length_from=lambda pkt, _n=f"{name}_length": getattr(pkt, _n)),
    ]


def check_declared(pkt: Packet, name: str, want: int, have: int) -> None:
    """A declared length the input cannot hold becomes a `malformed.truncated` finding."""
    if want > have:
        from .expert import add_finding

        add_finding(pkt, "error", "malformed.truncated",
                    f"{name}: {want} bytes declared, {have} present")


class OctetsField(StrLenField):
    """Bytes whose length another field gives; short input is a `malformed.truncated` finding."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        want = self.length_from(pkt)
        check_declared(pkt, self.name, want, len(s))
        return s[want:], s[:want]

    def i2repr(self, pkt: Packet, x: bytes) -> str:
        return x.hex() if isinstance(x, bytes) else repr(x)


class BoundedPacketLenField(PacketElements, PacketLenField):
    """A PacketLenField whose declared length the input must hold (else `malformed.truncated`)."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        check_declared(pkt, self.name, self.length_from(pkt), len(s))
        return super().getfield(pkt, s)
