"""Notifications: event-notification-request (C2), data-notification (0F) and
data-notification-confirm (10) (notes §3.6)."""

from __future__ import annotations

from typing import Any

from scapy.fields import ByteEnumField, PacketListField, XByteField
from scapy.packet import Packet

from ..axdr import CosemAttributeDescriptor, Data, DataField
from ..expert import add_finding, findings_of
from ..fields import VarLenField
from ..packet import DLMSElement
from .base import TAG_NAMES, APDUBase, register
from .common import (
    DataValueField,
    DateTimeOctetsField,
    DescriptorField,
    LongInvokeIdAndPriorityField,
    date_time,
    format_date_time,
    optional,
    split_long_invoke_id_and_priority,
    summarize_data,
    summarize_descriptor,
)

EVENT_NOTIFICATION_REQUEST = 0xC2
DATA_NOTIFICATION = 0x0F
DATA_NOTIFICATION_CONFIRM = 0x10


def _when(value: bytes | None) -> str:
    return f" at {format_date_time(value)}" if value else ""


@register
class EventNotificationRequest(APDUBase):
    """EVENT-NOTIFICATION-Request: time OPTIONAL (`date_time_present`: any non-zero flag means
    present, then a length-prefixed date-time), attribute descriptor, attribute value.

    The ASN.1 `time` is named `date_time` here: Scapy packets already have a `time` attribute.
    """

    apdu_tag = EVENT_NOTIFICATION_REQUEST
    apdu_name = "event-notification-request"
    fields_desc = [
        ByteEnumField("tag", EVENT_NOTIFICATION_REQUEST, TAG_NAMES),
        *optional("date_time",
                  VarLenField("date_time_length", None, length_of="date_time"),
                  DateTimeOctetsField("date_time", None,
                                      length_from=lambda pkt: pkt.getfieldval("date_time_length"))),
        DescriptorField("cosem_attribute_descriptor", CosemAttributeDescriptor),
        DataValueField("attribute_value"),
    ]

    def mysummary(self) -> str:
        return (f"event-notification-request{_when(self.date_time)} "
                f"{summarize_descriptor(self.cosem_attribute_descriptor)} = "
                f"{summarize_data(self.attribute_value)}")


class DescribedValue(DLMSElement):
    """`02 02` + an untagged Cosem-Attribute-Descriptor + the attribute's Data value."""

    name = "described value"
    fields_desc = [XByteField("structure_tag", 0x02), XByteField("structure_count", 0x02),
                   DescriptorField("cosem_attribute_descriptor", CosemAttributeDescriptor),
                   DataField("value")]


class DescribedPushBody(DLMSElement):
    """A vendor push body (seen from Sagemcom XT211 and the Czech EGD profile): structure
    {enum, array of structure {attribute descriptor without type tags, value}}. Not A-XDR Data:
    the descriptors carry no type tags, so a standard decoder stops at them."""

    name = "push body with untagged attribute descriptors"
    fields_desc = [XByteField("structure_tag", 0x02), XByteField("structure_count", 0x02),
                   DataField("push_type"), XByteField("array_tag", 0x01),
                   VarLenField("count", None, count_of="values"),
                   PacketListField("values", [], DescribedValue, count_from=lambda p: p.count)]


class NotificationBodyField(DataValueField):
    """The notification body: one Data, or the described-value vendor form when standard A-XDR
    fails on it and that form decodes the whole body cleanly."""

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        rest, value = super().getfield(pkt, s)
        if s[:2] == b"\x02\x02" and _has_error(value):
            alt = DescribedPushBody(s)
            if not _has_error(alt) and not alt.payload:
                add_finding(pkt, "note", "push.described-values",
                            "notification body uses untagged attribute descriptors (a vendor"
                            " push format, not A-XDR): decoded as such")
                return b"", alt
        return rest, value

    def m2i(self, pkt: Packet, m: bytes) -> Packet:
        return Data(m, _parent=pkt)


def _has_error(p: Packet) -> bool:
    return any(f.severity == "error" for f in findings_of(p))


@register
class DataNotification(APDUBase):
    """Data-Notification: long-invoke-id-and-priority, date-time OCTET STRING (`00` if absent),
    notification-body (one Data)."""

    apdu_tag = DATA_NOTIFICATION
    apdu_name = "data-notification"
    fields_desc = [
        ByteEnumField("tag", DATA_NOTIFICATION, TAG_NAMES),
        LongInvokeIdAndPriorityField(),
        *date_time(),
        NotificationBodyField("notification_body"),
    ]

    def mysummary(self) -> str:
        ident = split_long_invoke_id_and_priority(self.long_invoke_id_and_priority or 0)
        body = self.notification_body
        shown = (f"{len(body.values)} described values" if isinstance(body, DescribedPushBody)
                 else summarize_data(body))
        return f"data-notification id {ident['long_invoke_id']}{_when(self.date_time)}: {shown}"


@register
class DataNotificationConfirm(APDUBase):
    """Data-Notification-Confirm: long-invoke-id-and-priority, date-time OCTET STRING.

    Not in the jDLMS ASN.1 (notes §3.1: GX-Net only); structure as two public ASN.1 ports of
    the later Green Book give it.
    """

    apdu_tag = DATA_NOTIFICATION_CONFIRM
    apdu_name = "data-notification-confirm"
    fields_desc = [
        ByteEnumField("tag", DATA_NOTIFICATION_CONFIRM, TAG_NAMES),
        LongInvokeIdAndPriorityField(),
        *date_time(),
    ]

    def mysummary(self) -> str:
        ident = split_long_invoke_id_and_priority(self.long_invoke_id_and_priority or 0)
        return f"data-notification-confirm id {ident['long_invoke_id']}{_when(self.date_time)}"
