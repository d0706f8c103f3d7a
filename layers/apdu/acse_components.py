"""ACSE components: `ACSEComponent` (a tagged TLV that never reads past its BER length) and one
subclass per component; `ComponentTagField` gives a component the tag of its APDU kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from scapy.config import conf
from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    Field,
    XByteField,
)
from scapy.packet import Packet, Raw

from ..expert import add_finding
from ..fields import OctetsField, VarLenField
from ..packet import DLMSElement
from .acse_fields import (
    APPLICATION_CONTEXT_OID,
    APPLICATION_CONTEXTS,
    MECHANISM_OID,
    MECHANISMS,
    BERIntegerField,
    ContentLengthField,
    InnerAPDUField,
    NamedBitsField,
    OIDField,
    TagTailField,
    ber_header,
    component_extent,
    dlms_id,
)
from .base import apdu_name

#: Application context id -> the short form used in summaries.
APPLICATION_CONTEXT_SHORT: dict[int, str] = {1: "LN", 2: "SN", 3: "LN+ciphering",
                                             4: "SN+ciphering"}

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
        return dlms_id(self.oid, APPLICATION_CONTEXT_OID)

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
        return dlms_id(self.oid, MECHANISM_OID)

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


__all__ = [
    "ACSE_REQUIREMENTS_BITS", "ACSE_SERVICE_PROVIDER_DIAGNOSTICS",
    "ACSE_SERVICE_USER_DIAGNOSTICS", "APPLICATION_CONTEXT_SHORT", "ASSOCIATION_RESULTS",
    "AUTHENTICATION_VALUE_CHOICES", "DIAGNOSTIC_SOURCES", "PROTOCOL_VERSION_BITS",
    "RELEASE_REQUEST_REASONS", "RELEASE_RESPONSE_REASONS", "UNIVERSAL_TAGS", "ACSEComponent",
    "ACSERequirements", "ApplicationContextName", "ApplicationContextNameList",
    "AssociationResult", "AuthenticationValue", "CalledAEInvocationId", "CalledAEQualifier",
    "CalledAPInvocationId", "CalledAPTitle", "CallingAEInvocationId", "CallingAEQualifier",
    "CallingAPInvocationId", "CallingAPTitle", "ComponentTagField",
    "ImplementationInformation", "MechanismName", "ProtocolVersion", "ReleaseReason",
    "RespondingAEInvocationId", "RespondingAEQualifier", "RespondingAPInvocationId",
    "RespondingAPTitle", "ResultSourceDiagnostic", "UnknownComponent", "UserInformation",
]
