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

BER helpers and fields: `layers.apdu.acse_fields`; the components: `layers.apdu.acse_components`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from scapy.config import conf
from scapy.fields import ByteEnumField, PacketListField
from scapy.packet import Packet

from ..expert import add_finding
from ..fields import field_value
from ..packet import dissect_as
from .acse_components import (
    ACSEComponent,
    ACSERequirements,
    ApplicationContextName,
    ApplicationContextNameList,
    AssociationResult,
    AuthenticationValue,
    CalledAEInvocationId,
    CalledAEQualifier,
    CalledAPInvocationId,
    CalledAPTitle,
    CallingAEInvocationId,
    CallingAEQualifier,
    CallingAPInvocationId,
    CallingAPTitle,
    ImplementationInformation,
    MechanismName,
    ProtocolVersion,
    ReleaseReason,
    RespondingAEInvocationId,
    RespondingAEQualifier,
    RespondingAPInvocationId,
    RespondingAPTitle,
    ResultSourceDiagnostic,
    UnknownComponent,
    UserInformation,
)
from .acse_fields import MECHANISM_DESCRIPTIONS, ContentLengthField, component_extent
from .base import TAG_NAMES, APDUBase, register

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


__all__ = ["AARE", "AARQ", "ACSEAPDU", "COMPONENTS", "RLRE", "RLRQ", "ComponentListField"]
