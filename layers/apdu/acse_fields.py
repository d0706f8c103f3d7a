"""BER for ACSE: OID and TLV helpers, the DLMS UA OIDs and names, and the field classes
ACSE components are made of (`InnerAPDUField` dissects user-information's APDU via `APDU`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scapy.config import conf
from scapy.fields import Field, PacketLenField
from scapy.packet import Packet

from ..expert import add_finding
from ..fields import OctetsField, VarLenField, decode_length
from ..packet import PacketElements
from . import initiate  # noqa: F401 - registers the xDLMS APDUs found in user-information
from .base import APDU

#: {2 16 756 5 8}: the DLMS UA object identifier arc, BER content octets.
DLMS_UA_OID = bytes.fromhex("6085740508")
APPLICATION_CONTEXT_OID = DLMS_UA_OID + b"\x01"
MECHANISM_OID = DLMS_UA_OID + b"\x02"

#: Application context id (last arc of 2.16.756.5.8.1.x) -> name.
APPLICATION_CONTEXTS: dict[int, str] = {
    1: "logical-name-referencing-no-ciphering",
    2: "short-name-referencing-no-ciphering",
    3: "logical-name-referencing-with-ciphering",
    4: "short-name-referencing-with-ciphering",
}

#: Authentication mechanism id (last arc of 2.16.756.5.8.2.x) -> name.
MECHANISMS: dict[int, str] = {
    0: "lowest", 1: "low", 2: "high", 3: "high-md5", 4: "high-sha1", 5: "high-gmac",
    6: "high-sha256", 7: "high-ecdsa",
}
#: Authentication mechanism id -> description.
MECHANISM_DESCRIPTIONS: dict[int, str] = {
    0: "lowest level security, no authentication",
    1: "LLS, password",
    2: "HLS, manufacturer specific",
    3: "HLS MD5",
    4: "HLS SHA-1",
    5: "HLS GMAC",
    6: "HLS SHA-256",
    7: "HLS ECDSA",
}


def oid_to_str(content: bytes) -> str:
    """Dotted form of BER OBJECT IDENTIFIER content octets; ValueError if they are malformed."""
    if not content:
        raise ValueError("empty object identifier")
    arcs: list[int] = []
    value = 0
    for i, b in enumerate(content):
        value = (value << 7) | (b & 0x7F)
        if b & 0x80:
            if i == len(content) - 1:
                raise ValueError("object identifier ends inside a sub-identifier")
            continue
        arcs.append(value)
        value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def oid_from_str(dotted: str) -> bytes:
    """BER OBJECT IDENTIFIER content octets of a dotted OID such as "2.16.756.5.8.1.3"."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2:
        raise ValueError("an object identifier has at least two arcs")
    out = b""
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return out


def ber_header(s: bytes) -> tuple[int, int]:
    """(header size, content length) of the BER TLV starting `s`; ValueError if unreadable."""
    if not s:
        raise ValueError("tag missing")
    i = 1
    if s[0] & 0x1F == 0x1F:
        while i < len(s) and s[i] & 0x80:
            i += 1
        i += 1
        if i > len(s):
            raise ValueError("tag truncated")
    n, used = decode_length(s[i:])
    return i + used, n


def component_extent(s: bytes) -> tuple[int, int]:
    """(end, declared end) of the BER component starting `s`; ValueError if unreadable.

    When a constructed component's first inner TLV starts inside the declared content but runs
    past it, and the input holds it, `end` trusts the inner length (Gurux servers send RLREs
    whose outer lengths are too short); `end != declared end` then marks a bad length.
    """
    head, size = ber_header(s)
    end = head + size
    if s[0] & 0x20:
        try:
            inner_head, inner_size = ber_header(s[head:])
        except ValueError:
            return end, end
        inner_end = head + inner_head + inner_size
        if inner_head <= size and end < inner_end <= len(s):
            return inner_end, end
    return end, end


def dlms_id(oid: bytes | None, prefix: bytes) -> int | None:
    """Last arc byte of a DLMS UA OID with the given prefix (tolerates out-of-range bytes)."""
    if oid is not None and len(oid) == len(prefix) + 1 and oid.startswith(prefix):
        return oid[-1]
    return None


def _name_of_oid(oid: bytes) -> str | None:
    """Name of a DLMS UA application context or mechanism OID."""
    ctx = dlms_id(oid, APPLICATION_CONTEXT_OID)
    if ctx is not None:
        return APPLICATION_CONTEXTS.get(ctx, "unknown application context")
    mech = dlms_id(oid, MECHANISM_OID)
    if mech is not None:
        name = MECHANISMS.get(mech)
        return f"{name}: {MECHANISM_DESCRIPTIONS[mech]}" if name else "unknown mechanism"
    return None


# --- fields ------------------------------------------------------------------------------------

class ContentLengthField(VarLenField):
    """BER length of everything that follows it in its packet, computed on build when None."""

    def __init__(self, name: str, default: int | None = None) -> None:
        super().__init__(name, default)

    def i2m(self, pkt: Packet | None, x: int | None) -> int:
        if x is not None or pkt is None:
            return x or 0
        body = b""
        after = False
        for fld in pkt.fields_desc:
            if after:
                body = fld.addfield(pkt, body, pkt.getfieldval(fld.name))
            elif fld is self:
                after = True
        return len(body)


class TagTailField(Field[bytes, bytes]):
    """Subsequent octets of a BER high-tag-number form (first tag byte has low bits 11111)."""

    def __init__(self, name: str, default: bytes = b"") -> None:
        super().__init__(name, default)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, bytes]:
        i = 0
        while i < len(s) and s[i] & 0x80:
            i += 1
        if i >= len(s):
            raise ValueError("tag truncated")
        return s[i + 1:], s[: i + 1]

    def addfield(self, pkt: Packet, s: bytes, val: bytes | None) -> bytes:
        return s + (val or b"")

    def i2repr(self, pkt: Packet | None, x: bytes) -> str:
        return x.hex()


class BERIntegerField(Field[int, bytes]):
    """BER INTEGER content (two's complement, big-endian) whose length another field gives.

    On build it keeps the declared length when the value fits (so non-minimal encodings
    round-trip), else uses the minimal encoding. `names` maps values to names, or is a callable
    returning that map for a packet.
    """

    __slots__ = ["length_from", "names"]

    def __init__(self, name: str, default: int | None, length_from: Callable[[Packet], Any],
                 names: dict[int, str] | Callable[[Packet], dict[int, str]] | None = None) -> None:
        super().__init__(name, default)
        self.length_from = length_from
        self.names = names

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int]:
        want = self.length_from(pkt)
        if want > len(s):
            add_finding(pkt, "error", "malformed.truncated",
                        f"{self.name}: {want} bytes declared, {len(s)} present")
        return s[want:], int.from_bytes(s[:want], "big", signed=True)

    def i2m(self, pkt: Packet | None, x: int | None) -> bytes:
        value = x or 0
        declared = self.length_from(pkt) if pkt is not None else None
        if declared is not None:
            try:
                return value.to_bytes(declared, "big", signed=True)
            except OverflowError:
                pass
        size = (value if value >= 0 else ~value).bit_length() // 8 + 1
        return value.to_bytes(size, "big", signed=True)

    def addfield(self, pkt: Packet, s: bytes, val: int | None) -> bytes:
        return s + self.i2m(pkt, val)

    def i2len(self, pkt: Packet, x: Any) -> int:
        return len(self.i2m(pkt, x))

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        names = self.names(pkt) if callable(self.names) else self.names
        if names and x in names:
            return f"{names[x]} ({x})"
        return repr(x)


class NamedBitsField(OctetsField):
    """BER BIT STRING bits (after the unused-bits octet); bit 0 is the MSB of the first byte."""

    __slots__ = ["bit_names"]

    def __init__(self, name: str, default: bytes, bit_names: tuple[str, ...],
                 length_from: Callable[[Packet], int]) -> None:
        super().__init__(name, default, length_from=length_from)
        self.bit_names = bit_names

    def i2repr(self, pkt: Packet | None, x: bytes) -> str:
        if not isinstance(x, bytes):
            return repr(x)
        value = int.from_bytes(x, "big")
        bits = len(x) * 8
        on = [name for i, name in enumerate(self.bit_names)
              if i < bits and value >> (bits - 1 - i) & 1]
        return f"{x.hex()} [{', '.join(on)}]" if on else x.hex()


class OIDField(OctetsField):
    """OBJECT IDENTIFIER content octets: shown dotted and named; built from bytes or dotted str."""

    def any2i(self, pkt: Packet | None, x: Any) -> Any:
        if isinstance(x, str):
            return oid_from_str(x)
        return super().any2i(pkt, x)

    def i2repr(self, pkt: Packet | None, x: bytes) -> str:
        if not isinstance(x, bytes):
            return repr(x)
        try:
            dotted = oid_to_str(x)
        except ValueError:
            dotted = f"malformed OID {x.hex()}"
        name = _name_of_oid(x)
        return f"{dotted} ({name})" if name else dotted


class InnerAPDUField(PacketElements, PacketLenField):
    """The xDLMS APDU inside user-information's OCTET STRING, dissected through `APDU`."""

    def __init__(self, name: str, length_from: Callable[[Packet], int]) -> None:
        super().__init__(name, None, APDU, length_from=length_from)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Packet | None]:
        want = self.length_from(pkt)
        if want > len(s):
            add_finding(pkt, "error", "malformed.truncated",
                        f"{self.name}: {want} bytes declared, {len(s)} present")
        body, rest = s[:want], s[want:]
        if not body:
            return rest, None
        if pkt.getfieldval("inner_tag") != 0x04:
            add_finding(pkt, "note", "acse.user-information-not-octet-string",
                        "user-information is not an OCTET STRING; its content is kept raw")
            return rest, conf.raw_layer(load=body)
        return rest, self.m2i(pkt, body)

    def any2i(self, pkt: Packet | None, x: Any) -> Packet | None:
        if isinstance(x, (bytes, bytearray)):
            x = APDU(bytes(x))
        return super().any2i(pkt, x)


__all__ = [
    "APPLICATION_CONTEXTS", "APPLICATION_CONTEXT_OID", "DLMS_UA_OID", "MECHANISMS",
    "MECHANISM_DESCRIPTIONS", "MECHANISM_OID", "BERIntegerField", "ContentLengthField",
    "InnerAPDUField", "NamedBitsField", "OIDField", "TagTailField", "ber_header",
    "component_extent", "dlms_id", "oid_from_str", "oid_to_str",
]
