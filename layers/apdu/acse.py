"""ACSE APDUs (BER): AARQ 0x60, AARE 0x61, RLRQ 0x62, RLRE 0x63 (notes §3.2).

An ACSE APDU is its tag, a BER length and an ordered list of tagged components. Each component is
dispatched on its tag byte through the table of its APDU kind (the same context tag means different
things in an AARQ and an AARE), so any subset and any order dissects; an unknown component is kept
as it is and gets a note. Components know their own tag: build them without `ber_tag` and the tag
of the enclosing APDU kind is used, e.g.::

    AARQ(components=[ApplicationContextName(context_id=3),
                     CallingAPTitle(title=bytes.fromhex("4142434445464748")),
                     MechanismName(mechanism_id=5), AuthenticationValue(value=b"..."),
                     UserInformation(apdu=InitiateRequest(...))])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from scapy.config import conf
from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    Field,
    PacketLenField,
    PacketListField,
    XByteField,
)
from scapy.packet import Packet, Raw

from ..expert import add_finding
from ..fields import OctetsField, VarLenField, decode_length, field_value
from ..packet import DLMSElement, PacketElements, dissect_as
from . import initiate  # noqa: F401 - registers the xDLMS APDUs found in user-information
from .base import APDU, TAG_NAMES, APDUBase, apdu_name, register

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
#: Application context id -> the short form used in summaries.
APPLICATION_CONTEXT_SHORT: dict[int, str] = {1: "LN", 2: "SN", 3: "LN+ciphering",
                                             4: "SN+ciphering"}

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

ASSOCIATION_RESULTS: dict[int, str] = {0: "accepted", 1: "rejected-permanent",
                                       2: "rejected-transient"}
ACSE_SERVICE_USER_DIAGNOSTICS: dict[int, str] = {
    0: "null", 1: "no-reason-given", 2: "application-context-name-not-supported",
    3: "calling-AP-title-not-recognized", 4: "calling-AP-invocation-identifier-not-recognized",
    5: "calling-AE-qualifier-not-recognized", 6: "calling-AE-invocation-identifier-not-recognized",
    7: "called-AP-title-not-recognized", 8: "called-AP-invocation-identifier-not-recognized",
    9: "called-AE-qualifier-not-recognized", 10: "called-AE-invocation-identifier-not-recognized",
    11: "authentication-mechanism-name-not-recognised",
    12: "authentication-mechanism-name-required", 13: "authentication-failure",
    14: "authentication-required",
}
ACSE_SERVICE_PROVIDER_DIAGNOSTICS: dict[int, str] = {0: "null", 1: "no-reason-given",
                                                     2: "no-common-acse-version"}
#: result-source-diagnostic CHOICE tag -> (source name, value names).
DIAGNOSTIC_SOURCES: dict[int, tuple[str, dict[int, str]]] = {
    0xA1: ("acse-service-user", ACSE_SERVICE_USER_DIAGNOSTICS),
    0xA2: ("acse-service-provider", ACSE_SERVICE_PROVIDER_DIAGNOSTICS),
}
RELEASE_REQUEST_REASONS: dict[int, str] = {0: "normal", 1: "urgent", 30: "user-defined"}
RELEASE_RESPONSE_REASONS: dict[int, str] = {0: "normal", 1: "not-finished", 30: "user-defined"}
#: Authentication-value CHOICE tag -> name.
AUTHENTICATION_VALUE_CHOICES: dict[int, str] = {0x80: "charstring", 0x81: "bitstring",
                                                0xA2: "external", 0xA3: "other"}
ACSE_REQUIREMENTS_BITS: tuple[str, ...] = ("authentication", "application-context-negotiation")
PROTOCOL_VERSION_BITS: tuple[str, ...] = ("version1",)
UNIVERSAL_TAGS: dict[int, str] = {0x02: "integer", 0x04: "octet-string", 0x06: "object-identifier"}


# --- helpers -----------------------------------------------------------------------------------

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


def _dlms_id(oid: bytes | None, prefix: bytes) -> int | None:
    """Last arc byte of a DLMS UA OID with the given prefix (tolerates out-of-range bytes)."""
    if oid is not None and len(oid) == len(prefix) + 1 and oid.startswith(prefix):
        return oid[-1]
    return None


def _name_of_oid(oid: bytes) -> str | None:
    """Name of a DLMS UA application context or mechanism OID."""
    ctx = _dlms_id(oid, APPLICATION_CONTEXT_OID)
    if ctx is not None:
        return APPLICATION_CONTEXTS.get(ctx, "unknown application context")
    mech = _dlms_id(oid, MECHANISM_OID)
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


class ComponentTagField(ByteEnumField):
    """A component's tag byte; when None, the tag the enclosing APDU kind gives the component."""

    def i2m(self, pkt: Packet | None, x: int | None) -> int:
        if x is None:
            return pkt.default_tag() if isinstance(pkt, ACSEComponent) else 0
        return x

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        if x is None and isinstance(pkt, ACSEComponent):
            return f"{super().i2repr(pkt, pkt.default_tag())} (from the APDU kind)"
        return super().i2repr(pkt, x)


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


# --- components --------------------------------------------------------------------------------

def _header(names: dict[int, str]) -> list[Field]:
    """Tag byte and BER length of a component."""
    return [ComponentTagField("ber_tag", None, names), ContentLengthField("length")]


def _wrapped(value: Field, inner_tag: int, inner_names: dict[int, str] | None = None
             ) -> list[Field]:
    """EXPLICIT wrapping: inner tag, inner length, then the value field."""
    return [ByteEnumField("inner_tag", inner_tag, inner_names or UNIVERSAL_TAGS),
            VarLenField("inner_length", None, length_of=value.name), value]


def _octets(name: str, default: bytes = b"") -> OctetsField:
    return OctetsField(name, default, length_from=lambda p: p.inner_length)


def _integer(name: str, names: dict[int, str] | Callable[[Packet], dict[int, str]] | None = None
             ) -> BERIntegerField:
    return BERIntegerField(name, 0, length_from=lambda p: p.inner_length, names=names)


def _after_unused_bits(pkt: Packet) -> int:
    return max(0, (pkt.length or 0) - 1)


class ACSEComponent(DLMSElement):
    """One tagged component of an ACSE APDU; it never reads past its own BER length."""

    name = "acse-component"
    #: APDU kind ("aarq", "aare", "rlrq", "rlre") -> the tag of this component there.
    tags: ClassVar[dict[str, int]] = {}

    def default_tag(self) -> int:
        """Tag used when `ber_tag` is left None: that of the parent APDU kind, else the first."""
        kind = getattr(self.parent, "kind", None)
        if kind in self.tags:
            return self.tags[kind]
        return next(iter(self.tags.values()), 0)

    def do_dissect(self, s: bytes) -> bytes:
        try:
            end, declared = component_extent(s)
            head = ber_header(s)[0]
        except ValueError:
            return super().do_dissect(s)
        if end != declared:
            add_finding(self, "error", "acse.bad-length",
                        f"{self.name}: BER length says {declared - head} bytes, its content"
                        f" takes {end - head}")
        elif end > len(s):
            add_finding(self, "error", "malformed.truncated",
                        f"{self.name}: {end - head} bytes declared, {len(s) - head} present")
            end = len(s)
        left = super().do_dissect(s[:end])
        if left:
            add_finding(self, "warning", "acse.component-extra-bytes",
                        f"{self.name}: {len(left)} byte(s) inside its length not decoded")
            self.add_payload(conf.raw_layer(left))
        return s[end:]

    def mysummary(self) -> str:
        return self.name


class ProtocolVersion(ACSEComponent):
    """protocol-version [0] IMPLICIT BIT STRING (`80 02 07 80` = version1)."""

    name = "protocol-version"
    tags = {"aarq": 0x80, "aare": 0x80}
    fields_desc = [*_header({0x80: "protocol-version"}),
                   ByteField("unused_bits", 7),
                   NamedBitsField("bits", b"\x80", PROTOCOL_VERSION_BITS, _after_unused_bits)]


class ApplicationContextName(ACSEComponent):
    """application-context-name [1] EXPLICIT OBJECT IDENTIFIER; build with `context_id=`."""

    name = "application-context-name"
    tags = {"aarq": 0xA1, "aare": 0xA1}
    fields_desc = [*_header({0xA1: "application-context-name"}),
                   *_wrapped(OIDField("oid", APPLICATION_CONTEXT_OID + b"\x01",
                                      length_from=lambda p: p.inner_length), 0x06)]

    def __init__(self, _pkt: bytes = b"", *args: Any, context_id: int | None = None,
                 **kwargs: Any) -> None:
        if context_id is not None:
            kwargs.setdefault("oid", APPLICATION_CONTEXT_OID + bytes([context_id]))
        super().__init__(_pkt, *args, **kwargs)

    @property
    def context_id(self) -> int | None:
        """Last arc of a DLMS UA application context OID (2.16.756.5.8.1.x), else None."""
        return _dlms_id(self.oid, APPLICATION_CONTEXT_OID)

    def post_dissection(self, pkt: Packet) -> None:
        ctx = self.context_id
        if ctx not in APPLICATION_CONTEXTS:
            add_finding(self, "warning", "acse.unknown-application-context",
                        f"application context {bytes(self.oid or b'').hex()} is not one of the"
                        " DLMS UA contexts 2.16.756.5.8.1.1..4")
        super().post_dissection(pkt)

    def mysummary(self) -> str:
        return APPLICATION_CONTEXT_SHORT.get(self.context_id or -1, "context=?")


class MechanismName(ACSEComponent):
    """mechanism-name (AARQ [11] `8B`, AARE [9] `89`) IMPLICIT OID; build with `mechanism_id=`."""

    name = "mechanism-name"
    tags = {"aarq": 0x8B, "aare": 0x89}
    fields_desc = [*_header({0x8B: "mechanism-name", 0x89: "mechanism-name"}),
                   OIDField("oid", MECHANISM_OID + b"\x00", length_from=lambda p: p.length)]

    def __init__(self, _pkt: bytes = b"", *args: Any, mechanism_id: int | None = None,
                 **kwargs: Any) -> None:
        if mechanism_id is not None:
            kwargs.setdefault("oid", MECHANISM_OID + bytes([mechanism_id]))
        super().__init__(_pkt, *args, **kwargs)

    @property
    def mechanism_id(self) -> int | None:
        """Last byte of a DLMS UA mechanism OID (2.16.756.5.8.2.x), even out of range, else None."""
        return _dlms_id(self.oid, MECHANISM_OID)

    @property
    def mechanism_name(self) -> str | None:
        """Name of the mechanism ("lowest", "low", "high", "high-gmac", ...), None if unknown."""
        mech = self.mechanism_id
        return None if mech is None else MECHANISMS.get(mech)

    def post_dissection(self, pkt: Packet) -> None:
        mech = self.mechanism_id
        if mech not in MECHANISMS:
            shown = f"0x{mech:02x}" if mech is not None else bytes(self.oid or b"").hex()
            add_finding(self, "warning", "acse.unknown-mechanism",
                        f"authentication mechanism {shown} is not one of the DLMS UA"
                        " mechanisms 2.16.756.5.8.2.0..7")
        super().post_dissection(pkt)

    def mysummary(self) -> str:
        mech = self.mechanism_id
        return f"mech={MECHANISMS.get(mech, '?') if mech is not None else '?'}({mech})"


class _APTitle(ACSEComponent):
    """Common base of the AP-title components (`04 len <title>` inside)."""

    def mysummary(self) -> str:
        return f"{self.name}={bytes(self.title or b'').hex().upper()}"


class CalledAPTitle(_APTitle):
    """called-AP-title [2] (AARQ `A2`)."""

    name = "called-AP-title"
    tags = {"aarq": 0xA2}
    fields_desc = [*_header({0xA2: name}), *_wrapped(_octets("title"), 0x04)]


class CallingAPTitle(_APTitle):
    """calling-AP-title [6] (AARQ `A6 0A 04 08 <client system title>`)."""

    name = "calling-AP-title"
    tags = {"aarq": 0xA6}
    fields_desc = [*_header({0xA6: name}), *_wrapped(_octets("title"), 0x04)]


class RespondingAPTitle(_APTitle):
    """responding-AP-title [4] (AARE `A4 0A 04 08 <server system title>`)."""

    name = "responding-AP-title"
    tags = {"aare": 0xA4}
    fields_desc = [*_header({0xA4: name}), *_wrapped(_octets("title"), 0x04)]


class CalledAEQualifier(ACSEComponent):
    """called-AE-qualifier [3] (AARQ `A3`)."""

    name = "called-AE-qualifier"
    tags = {"aarq": 0xA3}
    fields_desc = [*_header({0xA3: name}), *_wrapped(_octets("value"), 0x04)]


class CallingAEQualifier(ACSEComponent):
    """calling-AE-qualifier [7] (AARQ `A7`; the client certificate in suites 1 and 2)."""

    name = "calling-AE-qualifier"
    tags = {"aarq": 0xA7}
    fields_desc = [*_header({0xA7: name}), *_wrapped(_octets("value"), 0x04)]


class RespondingAEQualifier(ACSEComponent):
    """responding-AE-qualifier [5] (AARE `A5`)."""

    name = "responding-AE-qualifier"
    tags = {"aare": 0xA5}
    fields_desc = [*_header({0xA5: name}), *_wrapped(_octets("value"), 0x04)]


class CalledAPInvocationId(ACSEComponent):
    """called-AP-invocation-identifier [4] EXPLICIT INTEGER (AARQ `A4`)."""

    name = "called-AP-invocation-identifier"
    tags = {"aarq": 0xA4}
    fields_desc = [*_header({0xA4: name}), *_wrapped(_integer("value"), 0x02)]


class CalledAEInvocationId(ACSEComponent):
    """called-AE-invocation-identifier [5] EXPLICIT INTEGER (AARQ `A5`)."""

    name = "called-AE-invocation-identifier"
    tags = {"aarq": 0xA5}
    fields_desc = [*_header({0xA5: name}), *_wrapped(_integer("value"), 0x02)]


class CallingAPInvocationId(ACSEComponent):
    """calling-AP-invocation-identifier [8] INTEGER (AARQ `A8`)."""

    name = "calling-AP-invocation-identifier"
    tags = {"aarq": 0xA8}
    fields_desc = [*_header({0xA8: name}), *_wrapped(_integer("value"), 0x02)]


class CallingAEInvocationId(ACSEComponent):
    """calling-AE-invocation-identifier [9] INTEGER (AARQ `A9 03 02 01 <user-id>`)."""

    name = "calling-AE-invocation-identifier"
    tags = {"aarq": 0xA9}
    fields_desc = [*_header({0xA9: name}), *_wrapped(_integer("value"), 0x02)]


class RespondingAPInvocationId(ACSEComponent):
    """responding-AP-invocation-identifier [6] INTEGER (AARE `A6`)."""

    name = "responding-AP-invocation-identifier"
    tags = {"aare": 0xA6}
    fields_desc = [*_header({0xA6: name}), *_wrapped(_integer("value"), 0x02)]


class RespondingAEInvocationId(ACSEComponent):
    """responding-AE-invocation-identifier [7] INTEGER (AARE `A7`)."""

    name = "responding-AE-invocation-identifier"
    tags = {"aare": 0xA7}
    fields_desc = [*_header({0xA7: name}), *_wrapped(_integer("value"), 0x02)]


class ACSERequirements(ACSEComponent):
    """sender (AARQ `8A`) / responder (AARE `88`) acse-requirements, IMPLICIT BIT STRING."""

    name = "acse-requirements"
    tags = {"aarq": 0x8A, "aare": 0x88}
    fields_desc = [*_header({0x8A: "sender-acse-requirements",
                             0x88: "responder-acse-requirements"}),
                   ByteField("unused_bits", 7),
                   NamedBitsField("bits", b"\x80", ACSE_REQUIREMENTS_BITS, _after_unused_bits)]

    @property
    def authentication(self) -> bool:
        """Bit 0 (authentication functional unit)."""
        return bool(self.bits) and bool(self.bits[0] & 0x80)


class AuthenticationValue(ACSEComponent):
    """calling (AARQ `AC`) / responding (AARE `AA`) authentication-value, EXPLICIT CHOICE.

    `inner_tag` is the CHOICE: `80` charstring (password, CtoS/StoC challenge), `81` bitstring
    (its content keeps the unused-bits octet), `A2` external, `A3` other.
    """

    name = "authentication-value"
    tags = {"aarq": 0xAC, "aare": 0xAA}
    fields_desc = [*_header({0xAC: "calling-authentication-value",
                             0xAA: "responding-authentication-value"}),
                   *_wrapped(_octets("value"), 0x80, AUTHENTICATION_VALUE_CHOICES)]


class ApplicationContextNameList(ACSEComponent):
    """application-context-name-list (AARQ [13] `AD`, AARE [11] `AB`), kept as raw content."""

    name = "application-context-name-list"
    tags = {"aarq": 0xAD, "aare": 0xAB}
    fields_desc = [*_header({0xAD: name, 0xAB: name}),
                   OctetsField("value", b"", length_from=lambda p: p.length)]


class ImplementationInformation(ACSEComponent):
    """implementation-information [29] IMPLICIT GraphicString.

    The ASN.1 makes it primitive (`9D`); `BD` (constructed) is also seen and dissected the same.
    """

    name = "implementation-information"
    tags = {"aarq": 0x9D, "aare": 0x9D}
    fields_desc = [*_header({0x9D: name, 0xBD: name}),
                   OctetsField("value", b"", length_from=lambda p: p.length)]


class AssociationResult(ACSEComponent):
    """result [2] EXPLICIT INTEGER (AARE `A2 03 02 01 r`)."""

    name = "result"
    tags = {"aare": 0xA2}
    fields_desc = [*_header({0xA2: name}), *_wrapped(_integer("result", ASSOCIATION_RESULTS), 0x02)]

    def post_dissection(self, pkt: Packet) -> None:
        if self.result not in ASSOCIATION_RESULTS:
            add_finding(self, "warning", "acse.unknown-result",
                        f"association result {self.result} is not 0..2")
        super().post_dissection(pkt)

    def mysummary(self) -> str:
        return ASSOCIATION_RESULTS.get(self.result, f"result={self.result}")


def _diagnostic_names(pkt: Packet | None) -> dict[int, str]:
    src = DIAGNOSTIC_SOURCES.get(getattr(pkt, "source_tag", None) or 0)
    return src[1] if src else {}


class ResultSourceDiagnostic(ACSEComponent):
    """result-source-diagnostic [3] (AARE `A3 05 A1 03 02 01 d`): source CHOICE, then INTEGER."""

    name = "result-source-diagnostic"
    tags = {"aare": 0xA3}
    fields_desc = [*_header({0xA3: name}),
                   ByteEnumField("source_tag", 0xA1,
                                 {k: v[0] for k, v in DIAGNOSTIC_SOURCES.items()}),
                   ContentLengthField("source_length"),
                   *_wrapped(_integer("value", _diagnostic_names), 0x02)]

    @property
    def diagnostic(self) -> tuple[str, int, str]:
        """(source, value, name), e.g. ("acse-service-user", 14, "authentication-required")."""
        src = DIAGNOSTIC_SOURCES.get(self.source_tag)
        source = src[0] if src else f"source-0x{self.source_tag:02x}"
        name = src[1].get(self.value, f"unknown-{self.value}") if src else f"unknown-{self.value}"
        return source, self.value, name

    def post_dissection(self, pkt: Packet) -> None:
        src = DIAGNOSTIC_SOURCES.get(self.source_tag)
        if src is None or self.value not in src[1]:
            add_finding(self, "warning", "acse.unknown-diagnostic",
                        f"result-source-diagnostic {self.source_tag:#04x}/{self.value} is not"
                        " a known acse-service-user/provider value")
        super().post_dissection(pkt)

    def mysummary(self) -> str:
        source, _, name = self.diagnostic
        return f"({source}: {name})"


def _reason_names(pkt: Packet | None) -> dict[int, str]:
    kind = getattr(getattr(pkt, "parent", None), "kind", None)
    return RELEASE_RESPONSE_REASONS if kind == "rlre" else RELEASE_REQUEST_REASONS


class ReleaseReason(ACSEComponent):
    """RLRQ / RLRE reason [0] IMPLICIT INTEGER (`80 01 x`)."""

    name = "reason"
    tags = {"rlrq": 0x80, "rlre": 0x80}
    fields_desc = [*_header({0x80: name}),
                   BERIntegerField("reason", 0, length_from=lambda p: p.length,
                                   names=_reason_names)]

    def mysummary(self) -> str:
        return f"reason={_reason_names(self).get(self.reason, self.reason)}"


class UserInformation(ACSEComponent):
    """user-information [30] EXPLICIT OCTET STRING (`BE len 04 len <xDLMS APDU>`).

    `apdu` is the inner APDU, dissected with `APDU` (a Packet, or bytes when building).
    """

    name = "user-information"
    tags = {"aarq": 0xBE, "aare": 0xBE, "rlrq": 0xBE, "rlre": 0xBE}
    fields_desc = [*_header({0xBE: name}),
                   *_wrapped(InnerAPDUField("apdu", length_from=lambda p: p.inner_length), 0x04)]

    def mysummary(self) -> str:
        return f"user-information={_inner_name(self.apdu)}"


class UnknownComponent(ACSEComponent):
    """A component whose tag is not defined for this APDU: kept as tag, length and content."""

    name = "unknown-component"
    fields_desc = [XByteField("ber_tag", 0x9C),
                   ConditionalField(TagTailField("tag_tail"),
                                    lambda p: (p.ber_tag or 0) & 0x1F == 0x1F),
                   ContentLengthField("length"),
                   OctetsField("value", b"", length_from=lambda p: p.length)]

    def post_dissection(self, pkt: Packet) -> None:
        kind = getattr(self.parent, "kind", "ACSE APDU")
        add_finding(self, "note", "acse.unknown-component",
                    f"component tag 0x{self.ber_tag:02x} is not defined in an {kind.upper()};"
                    " kept undecoded")
        super().post_dissection(pkt)

    def mysummary(self) -> str:
        return f"component-0x{self.ber_tag:02x}"


def _inner_name(inner: Packet | None) -> str:
    if inner is None:
        return "none"
    if isinstance(inner, Raw):
        return "raw"
    tag = getattr(inner, "tag", None)
    return apdu_name(tag) if isinstance(tag, int) else inner.name


#: APDU kind -> component tag -> class.
COMPONENTS: dict[str, dict[int, type[ACSEComponent]]] = {
    "aarq": {0x80: ProtocolVersion, 0xA1: ApplicationContextName, 0xA2: CalledAPTitle,
             0xA3: CalledAEQualifier, 0xA4: CalledAPInvocationId, 0xA5: CalledAEInvocationId,
             0xA6: CallingAPTitle, 0xA7: CallingAEQualifier, 0xA8: CallingAPInvocationId,
             0xA9: CallingAEInvocationId, 0x8A: ACSERequirements, 0x8B: MechanismName,
             0xAC: AuthenticationValue, 0xAD: ApplicationContextNameList,
             0x9D: ImplementationInformation, 0xBD: ImplementationInformation,
             0xBE: UserInformation},
    "aare": {0x80: ProtocolVersion, 0xA1: ApplicationContextName, 0xA2: AssociationResult,
             0xA3: ResultSourceDiagnostic, 0xA4: RespondingAPTitle, 0xA5: RespondingAEQualifier,
             0xA6: RespondingAPInvocationId, 0xA7: RespondingAEInvocationId,
             0x88: ACSERequirements, 0x89: MechanismName, 0xAA: AuthenticationValue,
             0xAB: ApplicationContextNameList, 0x9D: ImplementationInformation,
             0xBD: ImplementationInformation, 0xBE: UserInformation},
    "rlrq": {0x80: ReleaseReason, 0xBE: UserInformation},
    "rlre": {0x80: ReleaseReason, 0xBE: UserInformation},
}


class ComponentListField(PacketListField):
    """The components of an ACSE APDU, each dispatched on its tag through `COMPONENTS[kind]`."""

    __slots__ = ["kind"]

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(name, [], ACSEComponent, length_from=lambda p: p.length)
        self.kind = kind

    def m2i(self, pkt: Packet | None, m: bytes) -> Packet:
        return dissect_as(COMPONENTS[self.kind].get(m[0], UnknownComponent), m, parent=pkt)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, list[Packet]]:
        declared = self.length_from(pkt)
        want = declared
        offset = 0
        while offset < want:
            try:
                end, _ = component_extent(s[offset:])
            except ValueError:
                break
            offset += end
            if want < offset <= len(s):
                want = offset
        if want != declared:
            add_finding(pkt, "error", "acse.bad-length",
                        f"{pkt.name}: BER length says {declared} bytes, its components take {want}")
        elif want > len(s):
            add_finding(pkt, "error", "malformed.truncated",
                        f"{pkt.name}: {want} bytes declared, {len(s)} present")
        body, rest = s[:want], s[want:]
        found: list[Packet] = []
        while body:
            comp = self.m2i(pkt, body)
            pad = comp.lastlayer()
            if isinstance(pad, conf.padding_layer):
                body = pad.load
                del pad.underlayer.payload
            else:
                body = b""
            found.append(comp)
        return rest, found


# --- APDUs -------------------------------------------------------------------------------------

class ACSEAPDU(APDUBase):
    """Common base of the four ACSE APDUs: tag, BER length, components."""

    kind: ClassVar[str] = ""
    #: Component classes the ASN.1 makes mandatory in this APDU.
    mandatory: ClassVar[tuple[type[ACSEComponent], ...]] = ()

    def component(self, cls: type[ACSEComponent]) -> Any:
        """The first component of class `cls`, or None."""
        for comp in field_value(self, "components") or ():
            if isinstance(comp, cls):
                return comp
        return None

    @property
    def user_information(self) -> Packet | None:
        """The xDLMS APDU carried in user-information (a Packet), or None."""
        comp = self.component(UserInformation)
        return None if comp is None else comp.apdu

    def do_dissect(self, s: bytes) -> bytes:
        rest = super().do_dissect(s)
        if rest:
            add_finding(self, "error", "acse.trailing-bytes",
                        f"{self.name}: {len(rest)} byte(s) after its BER length")
        return rest

    def post_dissection(self, pkt: Packet) -> None:
        if "length" in self.fields:
            for cls in self.mandatory:
                if self.component(cls) is None:
                    add_finding(self, "warning", "acse.missing-component",
                                f"{self.name}: mandatory {cls._name} is absent")
        super().post_dissection(pkt)

    def mysummary(self) -> str:
        parts = [self.name]
        for cls in _SUMMARY_ORDER:
            comp = self.component(cls)
            if comp is not None:
                parts.append(comp.mysummary())
        mech = self.component(MechanismName)
        if mech is not None and mech.mechanism_id in MECHANISM_DESCRIPTIONS:
            parts.append(f"({mech.mechanism_name}: {MECHANISM_DESCRIPTIONS[mech.mechanism_id]})")
        return " ".join(parts)


#: Components shown in an ACSE APDU's summary line, in this order.
_SUMMARY_ORDER: tuple[type[ACSEComponent], ...] = (
    ApplicationContextName, AssociationResult, ResultSourceDiagnostic, MechanismName,
    CallingAPTitle, RespondingAPTitle, ReleaseReason, UserInformation,
)


class _AssociationAPDU(ACSEAPDU):
    """Shared properties of AARQ and AARE."""

    @property
    def application_context_id(self) -> int | None:
        """DLMS UA application context id (1 LN, 2 SN, 3 LN+ciphering, 4 SN+ciphering)."""
        comp = self.component(ApplicationContextName)
        return None if comp is None else comp.context_id

    @property
    def mechanism_id(self) -> int | None:
        """Authentication mechanism id byte (0..7; out-of-range bytes are returned as they are)."""
        comp = self.component(MechanismName)
        return None if comp is None else comp.mechanism_id

    @property
    def authentication_value(self) -> bytes | None:
        """Content of the calling/responding authentication-value (password or challenge)."""
        comp = self.component(AuthenticationValue)
        return None if comp is None else comp.value


@register
class AARQ(_AssociationAPDU):
    """A-ASSOCIATE request (`60`)."""

    name = "AARQ"
    apdu_name = "aarq"
    kind = "aarq"
    mandatory = (ApplicationContextName,)
    fields_desc = [ByteEnumField("tag", 0x60, TAG_NAMES), ContentLengthField("length"),
                   ComponentListField("components", "aarq")]

    @property
    def calling_ap_title(self) -> bytes | None:
        """Client system title from calling-AP-title (content only, without `04 08`)."""
        comp = self.component(CallingAPTitle)
        return None if comp is None else comp.title


@register
class AARE(_AssociationAPDU):
    """A-ASSOCIATE response (`61`)."""

    name = "AARE"
    apdu_name = "aare"
    kind = "aare"
    mandatory = (ApplicationContextName, AssociationResult, ResultSourceDiagnostic)
    fields_desc = [ByteEnumField("tag", 0x61, TAG_NAMES), ContentLengthField("length"),
                   ComponentListField("components", "aare")]

    @property
    def responding_ap_title(self) -> bytes | None:
        """Server system title from responding-AP-title (content only, without `04 08`)."""
        comp = self.component(RespondingAPTitle)
        return None if comp is None else comp.title

    @property
    def result(self) -> int | None:
        """Association result: 0 accepted, 1 rejected-permanent, 2 rejected-transient."""
        comp = self.component(AssociationResult)
        return None if comp is None else comp.result

    @property
    def diagnostic(self) -> tuple[str, int, str] | None:
        """(source, value, name) of result-source-diagnostic."""
        comp = self.component(ResultSourceDiagnostic)
        return None if comp is None else comp.diagnostic


class _ReleaseAPDU(ACSEAPDU):
    """Shared properties of RLRQ and RLRE."""

    @property
    def reason(self) -> int | None:
        """Release reason (RLRQ: 0 normal, 1 urgent, 30 user-defined; RLRE: 1 not-finished)."""
        comp = self.component(ReleaseReason)
        return None if comp is None else comp.reason


@register
class RLRQ(_ReleaseAPDU):
    """A-RELEASE request (`62`)."""

    name = "RLRQ"
    apdu_name = "rlrq"
    kind = "rlrq"
    fields_desc = [ByteEnumField("tag", 0x62, TAG_NAMES), ContentLengthField("length"),
                   ComponentListField("components", "rlrq")]


@register
class RLRE(_ReleaseAPDU):
    """A-RELEASE response (`63`)."""

    name = "RLRE"
    apdu_name = "rlre"
    kind = "rlre"
    fields_desc = [ByteEnumField("tag", 0x63, TAG_NAMES), ContentLengthField("length"),
                   ComponentListField("components", "rlre")]
