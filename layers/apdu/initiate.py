"""xDLMS InitiateRequest (0x01) / InitiateResponse (0x08), the conformance block,
ConfirmedServiceError (0x0E) and ExceptionResponse (0xD8) (notes §3.3, §3.4, §3.6)."""

from __future__ import annotations

from collections.abc import Callable

from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    Field,
    FlagsField,
    IntField,
    ShortField,
    SignedByteField,
    XShortEnumField,
    XShortField,
)
from scapy.packet import Packet

from ..expert import add_finding
from ..fields import OctetsField, VarLenField
from .base import TAG_NAMES, APDUBase, register
from .common import BooleanField, ProtocolEnumField, check_enum, optional

#: Conformance bit number (bit 0 = MSB of the first of the 3 bytes) -> name (notes §3.4).
CONFORMANCE_BITS: tuple[str, ...] = (
    "reserved-zero", "general-protection", "general-block-transfer", "read", "write",
    "unconfirmed-write", "delta-value-encoding", "reserved-seven",
    "attribute0-supported-with-set", "priority-mgmt-supported", "attribute0-supported-with-get",
    "block-transfer-with-get-or-read", "block-transfer-with-set-or-write",
    "block-transfer-with-action", "multiple-references", "information-report",
    "data-notification", "access", "parameterized-access", "get", "set", "selective-access",
    "event-notification", "action",
)
#: The same names in FlagsField order (index i = value bit 1 << i).
_CONFORMANCE_FLAGS = list(reversed(CONFORMANCE_BITS))

VAA_NAMES: dict[int, str] = {0x0007: "LN", 0xFA00: "SN"}

#: ConfirmedServiceError CHOICE (the service that failed).
CONFIRMED_SERVICES: dict[int, str] = {
    1: "initiate-error", 2: "get-status", 3: "get-name-list", 4: "get-variable-attribute",
    5: "read", 6: "write", 7: "get-data-set-attribute", 8: "get-ti-attribute",
    9: "change-scope", 10: "start", 11: "stop", 12: "resume", 13: "make-usable",
    14: "initiate-load", 15: "load-segment", 16: "terminate-load", 17: "initiate-up-load",
    18: "up-load-segment", 19: "terminate-up-load",
}
#: ServiceError CHOICE tag, numbered as in the ASN.1 (8 change-scope, 9 task, 10 other).
SERVICE_ERRORS: dict[int, str] = {
    0: "application-reference", 1: "hardware-resource", 2: "vde-state-error", 3: "service",
    4: "definition", 5: "access", 6: "initiate", 7: "load-data-set", 8: "change-scope",
    9: "task", 10: "other",
}
#: ServiceError tag -> enumerated value -> name.
SERVICE_ERROR_VALUES: dict[int, dict[int, str]] = {
    0: {0: "other", 1: "time-elapsed", 2: "application-unreachable",
        3: "application-reference-invalid", 4: "application-context-unsupported",
        5: "provider-communication-error", 6: "deciphering-error"},
    1: {0: "other", 1: "memory-unavailable", 2: "processor-resource-unavailable",
        3: "mass-storage-unavailable", 4: "other-resource-unavailable"},
    2: {0: "other", 1: "no-dlms-context", 2: "loading-data-set", 3: "status-nochange",
        4: "status-inoperable"},
    3: {0: "other", 1: "pdu-size", 2: "service-unsupported"},
    4: {0: "other", 1: "object-undefined", 2: "object-class-inconsistent",
        3: "object-attribute-inconsistent"},
    5: {0: "other", 1: "scope-of-access-violated", 2: "object-access-invalid",
        3: "hardware-fault", 4: "object-unavailable"},
    6: {0: "other", 1: "dlms-version-too-low", 2: "incompatible-conformance",
        3: "pdu-size-too-short", 4: "refused-by-the-VDE-handler"},
    7: {0: "other", 1: "primitive-out-of-sequence", 2: "not-loadable",
        3: "dataset-size-too-large", 4: "not-awaited-segment", 5: "interpretation-failure",
        6: "storage-failure", 7: "data-set-not-ready"},
    8: {},
    9: {0: "other", 1: "no-remote-control", 2: "ti-stopped", 3: "ti-running", 4: "ti-unusable"},
    10: {0: "other"},
}

EXCEPTION_STATE_ERRORS: dict[int, str] = {1: "service-not-allowed", 2: "service-unknown"}
EXCEPTION_SERVICE_ERRORS: dict[int, str] = {
    1: "operation-not-possible", 2: "service-not-supported", 3: "other-reason",
    4: "pdu-too-long", 5: "deciphering-error", 6: "invocation-counter-error",
}


def conformance_names(value: int) -> list[str]:
    """Names of the bits set in a 24-bit conformance value, in bit-number order."""
    return [name for i, name in enumerate(CONFORMANCE_BITS) if value >> (23 - i) & 1]


class DependentEnumField(ByteField):
    """A byte whose value names depend on another field of the packet."""

    __slots__ = ["names_for"]

    def __init__(self, name: str, default: int, names_for: Callable[[Packet | None], dict[int, str]]
                 ) -> None:
        super().__init__(name, default)
        self.names_for = names_for

    def i2repr(self, pkt: Packet | None, x: int) -> str:
        name = self.names_for(pkt).get(x)
        return f"{name} ({x})" if name else repr(x)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int]:
        remain, value = super().getfield(pkt, s)
        check_enum(pkt, self.name, value, self.names_for(pkt))
        return remain, value


def _conformance_fields() -> list[Field]:
    """`5F 1F` [APPLICATION 31], length 04, unused bits 00, then the 24 named bits."""
    return [
        XShortField("conformance_tag", 0x5F1F),
        ByteField("conformance_length", 4),
        ByteField("conformance_unused_bits", 0),
        ConditionalField(FlagsField("conformance", 0, 24, _CONFORMANCE_FLAGS),
                         lambda p: p.conformance_length == 4),
        ConditionalField(
            OctetsField("conformance_bits", b"",
                        length_from=lambda p: max(0, p.conformance_length - 1)),
            lambda p: p.conformance_length != 4),
    ]


class _InitiateBase(APDUBase):
    """Checks of the conformance block shared by InitiateRequest and InitiateResponse."""

    @property
    def conformance_names(self) -> list[str]:
        """Names of the conformance bits set."""
        value = self.getfieldval("conformance")
        return conformance_names(int(value)) if value is not None else []

    def post_dissection(self, pkt: Packet) -> None:
        if "conformance_tag" in self.fields and self.conformance_tag != 0x5F1F:
            add_finding(self, "warning", "initiate.bad-conformance-tag",
                        f"conformance tag {self.conformance_tag:04x}, expected 5f1f")
        if "conformance_length" in self.fields and self.conformance_length != 4:
            add_finding(self, "warning", "initiate.bad-conformance-length",
                        f"conformance length {self.conformance_length}, expected 4")
        super().post_dissection(pkt)


@register
class InitiateRequest(_InitiateBase):
    """xDLMS InitiateRequest (`01`), the AARQ user-information.

    `dedicated_key` is the key bytes, or None when the OPTIONAL component is absent.
    """

    name = "InitiateRequest"
    apdu_name = "initiate-request"
    fields_desc = [
        ByteEnumField("tag", 0x01, TAG_NAMES),
        *optional("dedicated_key",
                  VarLenField("dedicated_key_length", None, length_of="dedicated_key"),
                  OctetsField("dedicated_key", None,
                              length_from=lambda p: p.dedicated_key_length)),
        *optional("response_allowed", BooleanField("response_allowed", None)),
        *optional("proposed_qos", SignedByteField("proposed_qos", None)),
        ByteField("proposed_dlms_version", 6),
        *_conformance_fields(),
        ShortField("client_max_receive_pdu_size", 0xFFFF),
    ]

    def mysummary(self) -> str:
        out = (f"initiate-request dlms={self.proposed_dlms_version}"
               f" max-pdu={self.client_max_receive_pdu_size}")
        return out + (" dedicated-key" if self.dedicated_key is not None else "")


@register
class InitiateResponse(_InitiateBase):
    """xDLMS InitiateResponse (`08`), the AARE user-information."""

    name = "InitiateResponse"
    apdu_name = "initiate-response"
    fields_desc = [
        ByteEnumField("tag", 0x08, TAG_NAMES),
        *optional("negotiated_qos", SignedByteField("negotiated_qos", None)),
        ByteField("negotiated_dlms_version", 6),
        *_conformance_fields(),
        ShortField("server_max_receive_pdu_size", 0xFFFF),
        XShortEnumField("vaa_name", 0x0007, VAA_NAMES),
    ]

    def mysummary(self) -> str:
        return (f"initiate-response dlms={self.negotiated_dlms_version}"
                f" max-pdu={self.server_max_receive_pdu_size}"
                f" vaa={VAA_NAMES.get(self.vaa_name, hex(self.vaa_name))}")


def _service_error_values(pkt: Packet | None) -> dict[int, str]:
    return SERVICE_ERROR_VALUES.get(getattr(pkt, "error_type", None), {})


@register
class ConfirmedServiceError(APDUBase):
    """ConfirmedServiceError (`0E <service> <ServiceError tag> <value>`).

    ServiceError tags are decoded per the ASN.1: 8 change-scope (reserved), 9 task, 10 other.
    Gurux's enums shift them (task = 8, other = 9); a tag 8 or 9 gets a note saying so.
    """

    name = "ConfirmedServiceError"
    apdu_name = "confirmed-service-error"
    fields_desc = [
        ByteEnumField("tag", 0x0E, TAG_NAMES),
        ProtocolEnumField("service", 1, CONFIRMED_SERVICES),
        ProtocolEnumField("error_type", 0, SERVICE_ERRORS),
        DependentEnumField("error_value", 0, _service_error_values),
    ]

    @property
    def description(self) -> str:
        """Service / error type / value: "write / application-reference / deciphering-error"."""
        service = CONFIRMED_SERVICES.get(self.service, f"unknown-{self.service}")
        kind = SERVICE_ERRORS.get(self.error_type, f"unknown-{self.error_type}")
        value = _service_error_values(self).get(self.error_value, f"unknown-{self.error_value}")
        return f"{service} / {kind} / {value}"

    def post_dissection(self, pkt: Packet) -> None:
        if "error_type" in self.fields and self.error_type in (8, 9):
            add_finding(self, "note", "service-error.numbering",
                        f"ServiceError tag {self.error_type} decoded per the ASN.1"
                        " (8 change-scope, 9 task, 10 other); Gurux stacks number task 8 and"
                        " other 9")
        super().post_dissection(pkt)

    def mysummary(self) -> str:
        return f"confirmed-service-error {self.description}"


@register
class ExceptionResponse(APDUBase):
    """exception-response (`D8 <state-error> <service-error>`); service-error 6
    (invocation-counter-error) is followed by the Unsigned32 counter the server expects."""

    name = "ExceptionResponse"
    apdu_name = "exception-response"
    fields_desc = [
        ByteEnumField("tag", 0xD8, TAG_NAMES),
        ProtocolEnumField("state_error", 1, EXCEPTION_STATE_ERRORS),
        ProtocolEnumField("service_error", 1, EXCEPTION_SERVICE_ERRORS),
        ConditionalField(IntField("invocation_counter", 0), lambda p: p.service_error == 6),
    ]

    @property
    def description(self) -> str:
        """"state-error / service-error", with the expected invocation counter when given."""
        state = EXCEPTION_STATE_ERRORS.get(self.state_error, f"unknown-{self.state_error}")
        service = EXCEPTION_SERVICE_ERRORS.get(self.service_error,
                                               f"unknown-{self.service_error}")
        out = f"{state} / {service}"
        if self.service_error == 6 and self.invocation_counter is not None:
            out += f" (expected invocation counter {self.invocation_counter})"
        return out

    def mysummary(self) -> str:
        return f"exception-response {self.description}"
