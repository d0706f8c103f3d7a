"""Pieces shared by the xDLMS service APDUs (notes §3.5-§3.7; names from the Green Book ASN.1).

Invoke-ids, result enumerations, OPTIONAL usage flags, SEQUENCE OF lists, DataBlock-G/-SA,
Get-Data-Result, date-time octet strings, and `ChoiceAPDU`: the dispatcher base of the CHOICE
APDUs (get-request, set-response, ...), which picks the variant class from the choice byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    Field,
    FieldListField,
    IntField,
    PacketField,
    PacketListField,
    StrField,
)
from scapy.packet import Packet

from ..axdr import (
    CosemAttributeDescriptor,
    Data,
    SelectiveAccessDescriptor,
    date_time_value,
)
from ..expert import add_finding
from ..fields import CountField, OctetsField, VarLenField, length_prefixed
from ..obis import INTERFACE_CLASSES, obis_str
from ..packet import DLMSElement, PacketElements
from .base import TAG_NAMES, APDUBase

#: Data-Access-Result (Green Book ENUMERATED).
DATA_ACCESS_RESULT: dict[int, str] = {
    0: "success", 1: "hardware-fault", 2: "temporary-failure", 3: "read-write-denied",
    4: "object-undefined", 9: "object-class-inconsistent", 11: "object-unavailable",
    12: "type-unmatched", 13: "scope-of-access-violated", 14: "data-block-unavailable",
    15: "long-get-aborted", 16: "no-long-get-in-progress", 17: "long-set-aborted",
    18: "no-long-set-in-progress", 19: "data-block-number-invalid", 250: "other-reason",
}

#: Action-Result (Green Book ENUMERATED).
ACTION_RESULT: dict[int, str] = {
    **{k: v for k, v in DATA_ACCESS_RESULT.items() if k <= 14},
    15: "long-action-aborted", 16: "no-long-action-in-progress", 250: "other-reason",
}

#: Get-Data-Result CHOICE.
GET_DATA_RESULT_CHOICES: dict[int, str] = {0: "data", 1: "data-access-result"}
#: DataBlock-G result CHOICE.
DATABLOCK_G_CHOICES: dict[int, str] = {0: "raw-data", 1: "data-access-result"}

#: Lists longer than Scapy's default limit (100) are common (profile reads, push lists); each
#: element is a Packet (about a kilobyte), so the bound matches `axdr.MAX_ELEMENTS`.
MAX_LIST = 1 << 16


# --------------------------------------------------------------------------------------------
# Invoke-Id-And-Priority / Long-Invoke-Id-And-Priority

def split_invoke_id_and_priority(value: int) -> dict[str, int]:
    """The parts of an Invoke-Id-And-Priority byte."""
    return {"invoke_id": value & 0x0F, "reserved": (value >> 4) & 0x03,
            "service_class": (value >> 6) & 1, "priority": (value >> 7) & 1}


def split_long_invoke_id_and_priority(value: int) -> dict[str, int]:
    """The parts of a Long-Invoke-Id-And-Priority (4 bytes)."""
    return {"long_invoke_id": value & 0xFFFFFF, "reserved": (value >> 24) & 0x0F,
            "self_descriptive": (value >> 28) & 1, "processing_option": (value >> 29) & 1,
            "service_class": (value >> 30) & 1, "priority": (value >> 31) & 1}


def _class_and_priority(confirmed: int, high: int) -> str:
    return (f"{'confirmed' if confirmed else 'unconfirmed'}, "
            f"{'high' if high else 'normal'} priority")


def describe_invoke_id_and_priority(value: int) -> str:
    """E.g. `invoke-id 1, confirmed, high priority` for 0xC1."""
    parts = split_invoke_id_and_priority(value)
    text = (f"invoke-id {parts['invoke_id']}, "
            f"{_class_and_priority(parts['service_class'], parts['priority'])}")
    if parts["reserved"]:
        text += f", reserved bits {parts['reserved']}"
    return text


def describe_long_invoke_id_and_priority(value: int) -> str:
    """E.g. `id 475, unconfirmed, normal priority, continue-on-error`."""
    parts = split_long_invoke_id_and_priority(value)
    text = (f"id {parts['long_invoke_id']}, "
            f"{_class_and_priority(parts['service_class'], parts['priority'])}, "
            f"{'break-on-error' if parts['processing_option'] else 'continue-on-error'}")
    if parts["self_descriptive"]:
        text += ", self-descriptive"
    if parts["reserved"]:
        text += f", reserved bits {parts['reserved']}"
    return text


class InvokeIdAndPriorityField(ByteField):
    """Invoke-Id-And-Priority: bit 7 priority (1 high), bit 6 service-class (1 confirmed),
    bits 5..4 reserved, bits 3..0 invoke-id."""

    def __init__(self, name: str = "invoke_id_and_priority", default: int = 0xC1) -> None:
        super().__init__(name, default)

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        if x is None:
            return "None"
        return f"0x{x:02x} ({describe_invoke_id_and_priority(x)})"


class LongInvokeIdAndPriorityField(IntField):
    """Long-Invoke-Id-And-Priority: bit 31 priority, 30 service-class, 29 processing-option
    (break-on-error), 28 self-descriptive, bits 23..0 long-invoke-id."""

    def __init__(self, name: str = "long_invoke_id_and_priority", default: int = 0) -> None:
        super().__init__(name, default)

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        if x is None:
            return "None"
        return f"0x{x:08x} ({describe_long_invoke_id_and_priority(x)})"


# --------------------------------------------------------------------------------------------
# Small field types

class BooleanField(ByteField):
    """A-XDR BOOLEAN: one byte, zero is false, anything else true (the byte is kept as sent)."""

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        if x is None:
            return "None"
        return ("true" if x else "false") + ("" if x in (0, 1) else f" (0x{x:02x})")


class PresenceField(ByteField):
    """A-XDR usage flag of an OPTIONAL component: `00` absent, anything else present.

    Left None, a build writes 1 when the guarded field holds a value, else 0.
    """

    __slots__ = ["of"]

    def __init__(self, name: str, of: str) -> None:
        super().__init__(name, None)
        self.of = of

    def i2m(self, pkt: Packet | None, x: int | None) -> int:
        if x is None:
            return int(pkt is not None and _has_value(pkt.getfieldval(self.of)))
        return x

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        if x is None:
            return "None"
        return "present" + ("" if x == 1 else f" (0x{x:02x})") if x else "absent"


def _has_value(value: Any) -> bool:
    return value is not None and not (isinstance(value, list) and not value)


def _present(flag: str, value: str) -> Callable[[Packet], bool]:
    def cond(pkt: Packet) -> bool:
        f = pkt.getfieldval(flag)
        return bool(f) if f is not None else _has_value(pkt.getfieldval(value))
    return cond


def optional(name: str, *fields: Field) -> list[Field]:
    """An A-XDR OPTIONAL component: a usage flag `<name>_present`, then its field(s).

    `name` is the field whose value decides the flag on build (the last one given when a
    length prefix precedes it).
    """
    cond = _present(f"{name}_present", name)
    return [PresenceField(f"{name}_present", name), *(ConditionalField(f, cond) for f in fields)]


def when(cond: Callable[[Packet], bool], *fields: Field) -> list[Field]:
    """The same condition on several fields (e.g. a length prefix and its bytes)."""
    return [ConditionalField(f, cond) for f in fields]


class ElementField(PacketElements, PacketField):
    """A PacketField whose structure must be on the wire: no bytes left is a decoding failure
    (a `malformed.field` finding), never a default element that the input did not hold."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Packet]:
        if not s:
            raise ValueError(f"{self.name}: no bytes left")
        return super().getfield(pkt, s)


class DataValueField(ElementField):
    """One A-XDR Data value (required on the wire)."""

    def __init__(self, name: str, default: Data | None = None) -> None:
        super().__init__(name, default, Data)


class DescriptorField(ElementField):
    """A fixed-size structure (Cosem-Attribute-/Method-Descriptor, 9 bytes): the element gets
    exactly its bytes, so no Padding layer is made for the rest (one Packet less per APDU)."""

    __slots__ = ["size"]

    def __init__(self, name: str, cls: Any, size: int = 9) -> None:
        super().__init__(name, None, cls)
        self.size = size

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Packet]:
        if not s:
            raise ValueError(f"{self.name}: no bytes left")
        return s[self.size:], self.m2i(pkt, s[:self.size])


def descriptor_with_selection() -> list[Field]:
    """Cosem-Attribute-Descriptor, then access-selection OPTIONAL (Selective-Access-Descriptor)."""
    return [DescriptorField("cosem_attribute_descriptor", CosemAttributeDescriptor),
            *optional("access_selection",
                      ElementField("access_selection", None, SelectiveAccessDescriptor))]


def _check_count(pkt: Packet, name: str, want: int | None, got: int) -> None:
    if want is not None and got < want:
        add_finding(pkt, "error", "malformed.truncated",
                    f"{name}: {want} element(s) declared, {got} present")


class SequenceOfField(PacketElements, PacketListField):
    """A-XDR SEQUENCE OF a structure; fewer elements than the count gives a finding."""

    def __init__(self, name: str, cls: Any, count_field: str) -> None:
        super().__init__(name, [], cls, count_from=lambda pkt: pkt.getfieldval(count_field),
                         max_count=MAX_LIST)

    def any2i(self, pkt: Packet | None, x: Any) -> list[Packet]:
        return [] if x is None else super().any2i(pkt, x)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, list[Packet]]:
        remain, lst = super().getfield(pkt, s)
        _check_count(pkt, self.name, self.count_from(pkt), len(lst))
        return remain, lst


class EnumListField(FieldListField):
    """A-XDR SEQUENCE OF a one-byte ENUMERATED; fewer elements than the count gives a finding."""

    def __init__(self, name: str, enum: dict[int, str], count_field: str) -> None:
        super().__init__(name, [], ProtocolEnumField(name, 0, enum),
                         count_from=lambda pkt: pkt.getfieldval(count_field),
                         max_count=MAX_LIST)

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, list[int]]:
        remain, lst = super().getfield(pkt, s)
        _check_count(pkt, self.name, self.count_from(pkt), len(lst))
        return remain, lst

    def i2repr(self, pkt: Packet, x: Any) -> Any:
        # writers that walk a list value call this once per element, too
        if isinstance(x, list):
            return super().i2repr(pkt, x)
        return self.field.i2repr(pkt, x)


def sequence_of(name: str, cls: Any) -> list[Field]:
    """An A-XDR `SEQUENCE OF` structure: `<name>_count`, then the elements."""
    return [CountField(f"{name}_count", None, count_of=name),
            SequenceOfField(name, cls, f"{name}_count")]


def enum_list(name: str, enum: dict[int, str]) -> list[Field]:
    """An A-XDR `SEQUENCE OF` a one-byte ENUMERATED: `<name>_count`, then the values."""
    return [CountField(f"{name}_count", None, count_of=name),
            EnumListField(name, enum, f"{name}_count")]


def check_enum(pkt: Packet, field: str, value: int | None, names: dict[int, str]) -> None:
    """Add an `apdu.unknown-enum-value` warning when an xDLMS ENUMERATED value (a result, an
    error) is not one the Green Book defines; the value is kept as sent."""
    if value is not None and names and value not in names:
        add_finding(pkt, "warning", "apdu.unknown-enum-value",
                    f"{pkt.name}: {field} {value} is not a defined value")


class ProtocolEnumField(ByteEnumField):
    """A one-byte ENUMERATED of an xDLMS APDU (Data-Access-Result, Action-Result, exception and
    service errors): a value outside the enumeration is flagged (`check_enum`). Not for the
    `enum` values of A-XDR Data, which are application data."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int]:
        remain, value = super().getfield(pkt, s)
        check_enum(pkt, self.name, value, self.i2s)
        return remain, value


def check_choice(pkt: Packet, field: str, choices: dict[int, str]) -> None:
    """Add an `apdu.unknown-choice` finding when a CHOICE byte has no defined alternative."""
    value = pkt.getfieldval(field)
    if value is not None and value not in choices:
        add_finding(pkt, "error", "apdu.unknown-choice",
                    f"{pkt.name}: {field} {value} is not a defined alternative")


# --------------------------------------------------------------------------------------------
# Date-time OCTET STRING (data-notification, access, information-report)

def format_date_time(b: bytes) -> str:
    """A 12-byte COSEM date-time as text (`*` for not-specified parts); other sizes as hex."""
    if len(b) != 12:
        return b.hex()
    value = date_time_value(b)
    text = value["date_time"]
    if value["deviation"] is not None:
        text += f" dev={value['deviation']}"
    if value["clock_status"] is not None:
        text += f" status=0x{value['clock_status']:02x}"
    return text


class DateTimeOctetsField(OctetsField):
    """An OCTET STRING holding a COSEM date-time, shown as text and hex."""

    def i2repr(self, pkt: Packet, x: bytes) -> str:
        if isinstance(x, bytes) and len(x) == 12:
            return f"{format_date_time(x)} ({x.hex()})"
        return super().i2repr(pkt, x)


class DataTypeTagField(Field[int | None, int | None]):
    """A byte some senders put before a date-time's `0C` length and others leave out, kept
    when sent (so builds round-trip): the Data octet-string tag `09` (Kaifa pushes: `09 0C` +
    12 bytes where the ASN.1 has a bare OCTET STRING, `0C` + 12 bytes or `00`), or the usage
    flag `01` of an OPTIONAL date-time (`lead=0x01`). Only `<lead> 0C` is read as one: a bare
    OCTET STRING of that length cannot hold a date-time."""

    __slots__ = ["lead"]

    def __init__(self, name: str, lead: int = 0x09) -> None:
        super().__init__(name, None, fmt="B")
        self.lead = lead

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, int | None]:
        if len(s) > 1 and s[0] == self.lead and s[1] == 0x0C:
            return s[1:], self.lead
        return s, None

    def addfield(self, pkt: Packet, s: bytes, val: int | None) -> bytes:
        return s if val is None else s + bytes([val])

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        if x is None:
            return "none"
        return f"0x{x:02x} ({'Data octet-string tag' if x == 0x09 else 'present'})"


def date_time(name: str = "date_time", flag: bool = False) -> list[Field]:
    """A date-time OCTET STRING, `00` when absent; a leading Data tag `09` (`<name>_type`) is
    kept if sent. With `flag`, the lead byte is instead the usage flag `01` of an OPTIONAL
    date-time (`<name>_present`), for senders that write it (others give only the length)."""
    lead = DataTypeTagField(f"{name}_present", 0x01) if flag else DataTypeTagField(f"{name}_type")
    return [lead,
            VarLenField(f"{name}_length", None, length_of=name),
            DateTimeOctetsField(name, b"",
                                length_from=lambda pkt: pkt.getfieldval(f"{name}_length"))]


# --------------------------------------------------------------------------------------------
# Block transfer structures (inline field lists: the APDU exposes last_block, block_number, ...)

def datablock_sa() -> list[Field]:
    """DataBlock-SA: last-block, block-number (Unsigned32), raw-data."""
    return [BooleanField("last_block", 1), IntField("block_number", 1),
            *length_prefixed("raw_data")]


def _is0(pkt: Packet) -> bool:
    return pkt.getfieldval("result") == 0


def _is1(pkt: Packet) -> bool:
    return pkt.getfieldval("result") == 1


def datablock_g() -> list[Field]:
    """DataBlock-G: last-block, block-number, result CHOICE {raw-data, data-access-result}."""
    return [BooleanField("last_block", 1), IntField("block_number", 1),
            ByteEnumField("result", 0, DATABLOCK_G_CHOICES),
            *when(_is0, *length_prefixed("raw_data")),
            ConditionalField(ProtocolEnumField("data_access_result", 0, DATA_ACCESS_RESULT), _is1)]


def get_data_result() -> list[Field]:
    """Get-Data-Result CHOICE inline: `result` (0 data, 1 data-access-result), then that."""
    return [ByteEnumField("result", 0, GET_DATA_RESULT_CHOICES),
            ConditionalField(DataValueField("data"), _is0),
            ConditionalField(ProtocolEnumField("data_access_result", 0, DATA_ACCESS_RESULT), _is1)]


def summarize_get_data_result(pkt: Packet) -> str:
    """`data <summary>` or `data-access-result <name>` for a Get-Data-Result."""
    if pkt.getfieldval("result") == 0:
        return f"data {summarize_data(pkt.getfieldval('data'))}"
    if pkt.getfieldval("result") == 1:
        dar = pkt.getfieldval("data_access_result")
        return f"data-access-result {DATA_ACCESS_RESULT.get(dar, dar)}"
    return f"result choice {pkt.getfieldval('result')}"


def summarize_datablock(pkt: Packet) -> str:
    """`block N[ last], M bytes` for the inline DataBlock fields."""
    text = f"block {pkt.getfieldval('block_number')}"
    if pkt.getfieldval("last_block"):
        text += " (last)"
    if "result" in pkt.fieldtype and pkt.getfieldval("result") == 1:
        dar = pkt.getfieldval("data_access_result")
        return f"{text}: data-access-result {DATA_ACCESS_RESULT.get(dar, dar)}"
    raw = pkt.getfieldval("raw_data")
    return f"{text}, {len(raw or b'')} bytes"


def summarize_data(value: Any) -> str:
    """Short text for a Data value (its own summary)."""
    if isinstance(value, Packet):
        return value.mysummary() if hasattr(value, "mysummary") else value.summary()
    return "none" if value is None else str(value)


def summarize_descriptor(desc: Any, member: str = "attr") -> str:
    """`1.0.1.8.0.255 attr 2 (register)` for a Cosem-Attribute/Method-Descriptor."""
    if not isinstance(desc, Packet):
        return "?"
    cid = desc.getfieldval("class_id")
    ident = desc.getfieldval("attribute_id" if member == "attr" else "method_id")
    instance = desc.getfieldval("instance_id")
    obis = obis_str(instance) if isinstance(instance, bytes) else str(instance)
    return f"{obis} {member} {ident} ({INTERFACE_CLASSES.get(cid, f'class {cid}')})"


# --------------------------------------------------------------------------------------------
# Structures used in lists

class CosemAttributeDescriptorWithSelection(DLMSElement):
    """Cosem-Attribute-Descriptor-With-Selection: a descriptor and an OPTIONAL access-selection."""

    name = "Cosem-Attribute-Descriptor-With-Selection"
    fields_desc = descriptor_with_selection()

    def mysummary(self) -> str:
        return summarize_descriptor(self.cosem_attribute_descriptor)


class GetDataResult(DLMSElement):
    """Get-Data-Result CHOICE {data [0] Data, data-access-result [1] Data-Access-Result}."""

    name = "Get-Data-Result"
    fields_desc = get_data_result()

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "result", GET_DATA_RESULT_CHOICES)
        return s

    def mysummary(self) -> str:
        return summarize_get_data_result(self)


class ActionResponseWithOptionalData(DLMSElement):
    """Action-Response-With-Optional-Data: result, return-parameters OPTIONAL Get-Data-Result."""

    name = "Action-Response-With-Optional-Data"
    fields_desc = [
        ProtocolEnumField("result", 0, ACTION_RESULT),
        *optional("return_parameters", ElementField("return_parameters", None, GetDataResult)),
    ]

    def mysummary(self) -> str:
        return summarize_action_response(self)


def summarize_action_response(pkt: Packet) -> str:
    """`<action-result>[, return-parameters ...]` for an Action-Response-With-Optional-Data."""
    result = pkt.getfieldval("result")
    text = ACTION_RESULT.get(result, str(result))
    params = pkt.getfieldval("return_parameters")
    if isinstance(params, Packet):
        text += f", return-parameters {summarize_get_data_result(params)}"
    return text


# --------------------------------------------------------------------------------------------
# CHOICE dispatch

def _choice_dispatch(cls: Any, _pkt: bytes | None = None, *args: Any,
                     **kargs: Any) -> type[Packet]:
    if _pkt is not None and len(_pkt) > 1:
        return cls.variants.get(_pkt[1], cls.unknown_variant)
    if _pkt:
        return cls.variants[cls.default_choice]
    return cls.variants.get(kargs.get("choice", cls.default_choice), cls.unknown_variant)


class ChoiceAPDU(APDUBase):
    """Dispatcher of a CHOICE APDU: `Cls(b)` returns the variant class chosen by `b[1]`.

    Subclasses set `variants` (choice byte -> class) and `unknown_variant`; built without bytes,
    `Cls(choice=n, ...)` picks by the `choice` keyword (default `default_choice`).
    """

    variants: ClassVar[dict[int, type[Packet]]] = {}
    unknown_variant: ClassVar[type[Packet]]
    default_choice: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Scapy only dispatches through a dispatch_hook found in the class's own __dict__.
        cls.dispatch_hook = classmethod(_choice_dispatch)  # type: ignore[assignment]


class UnknownChoice(APDUBase):
    """A CHOICE APDU whose choice byte is not defined: the bytes after it are kept as `data`."""

    variant = "unknown"

    def post_dissect(self, s: bytes) -> bytes:
        add_finding(self, "error", "apdu.unknown-choice",
                    f"{self.apdu_name}: choice {self.choice} is not defined")
        return s

    def mysummary(self) -> str:
        return f"{self.apdu_name} unknown choice {self.choice}"


def unknown_choice_fields(tag: int, choices: dict[int, str]) -> list[Field]:
    """Fields of an `UnknownChoice` variant."""
    return [ByteEnumField("tag", tag, TAG_NAMES), ByteEnumField("choice", 0, choices),
            StrField("data", b"")]


def choice_header(tag: int, choice: int, choices: dict[int, str]) -> list[Field]:
    """The tag and choice fields every variant starts with."""
    return [ByteEnumField("tag", tag, TAG_NAMES), ByteEnumField("choice", choice, choices)]


__all__ = [
    "ACTION_RESULT",
    "DATABLOCK_G_CHOICES",
    "DATA_ACCESS_RESULT",
    "GET_DATA_RESULT_CHOICES",
    "MAX_LIST",
    "ActionResponseWithOptionalData",
    "BooleanField",
    "ChoiceAPDU",
    "CosemAttributeDescriptorWithSelection",
    "DataTypeTagField",
    "DataValueField",
    "DateTimeOctetsField",
    "DescriptorField",
    "ElementField",
    "EnumListField",
    "GetDataResult",
    "InvokeIdAndPriorityField",
    "LongInvokeIdAndPriorityField",
    "PresenceField",
    "ProtocolEnumField",
    "SequenceOfField",
    "UnknownChoice",
    "check_choice",
    "check_enum",
    "choice_header",
    "datablock_g",
    "datablock_sa",
    "date_time",
    "describe_invoke_id_and_priority",
    "describe_long_invoke_id_and_priority",
    "descriptor_with_selection",
    "enum_list",
    "format_date_time",
    "get_data_result",
    "optional",
    "sequence_of",
    "split_invoke_id_and_priority",
    "split_long_invoke_id_and_priority",
    "summarize_action_response",
    "summarize_data",
    "summarize_datablock",
    "summarize_descriptor",
    "summarize_get_data_result",
    "unknown_choice_fields",
    "when",
]
