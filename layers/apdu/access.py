"""access-request (D9) and access-response (DA) (notes §3.6; Green Book ASN.1 Access-Request,
Access-Response and their bodies)."""

from __future__ import annotations

from scapy.fields import (
    ByteEnumField,
    ConditionalField,
    MultipleTypeField,
)
from scapy.packet import Packet

from ..axdr import CosemAttributeDescriptor, CosemMethodDescriptor, Data, SelectiveAccessDescriptor
from ..fields import CountField
from ..packet import DLMSElement
from .base import TAG_NAMES, APDUBase, register
from .common import (
    ACTION_RESULT,
    DATA_ACCESS_RESULT,
    DescriptorField,
    ElementField,
    LongInvokeIdAndPriorityField,
    ProtocolEnumField,
    SequenceOfField,
    check_choice,
    date_time,
    format_date_time,
    optional,
    sequence_of,
    split_long_invoke_id_and_priority,
    summarize_descriptor,
)

ACCESS_REQUEST = 0xD9
ACCESS_RESPONSE = 0xDA

ACCESS_REQUEST_CHOICES = {
    1: "access-request-get", 2: "access-request-set", 3: "access-request-action",
    4: "access-request-get-with-selection", 5: "access-request-set-with-selection",
}
ACCESS_RESPONSE_CHOICES = {1: "access-response-get", 2: "access-response-set",
                           3: "access-response-action"}


class AccessRequestSpecification(DLMSElement):
    """Access-Request-Specification CHOICE: get/set {attribute descriptor}, action {method
    descriptor}, get/set-with-selection {attribute descriptor, access-selection}."""

    name = "Access-Request-Specification"
    fields_desc = [
        ByteEnumField("choice", 1, ACCESS_REQUEST_CHOICES),
        ConditionalField(DescriptorField("cosem_attribute_descriptor", CosemAttributeDescriptor),
                         lambda pkt: pkt.choice in (1, 2, 4, 5)),
        ConditionalField(DescriptorField("cosem_method_descriptor", CosemMethodDescriptor),
                         lambda pkt: pkt.choice == 3),
        ConditionalField(ElementField("access_selection", None, SelectiveAccessDescriptor),
                         lambda pkt: pkt.choice in (4, 5)),
    ]

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "choice", ACCESS_REQUEST_CHOICES)
        return s

    def mysummary(self) -> str:
        kind = ACCESS_REQUEST_CHOICES.get(self.choice, str(self.choice)).removeprefix(
            "access-request-")
        if self.choice == 3:
            return f"{kind} {summarize_descriptor(self.cosem_method_descriptor, 'method')}"
        return f"{kind} {summarize_descriptor(self.cosem_attribute_descriptor)}"


class AccessResponseSpecification(DLMSElement):
    """Access-Response-Specification CHOICE: get/set {Data-Access-Result},
    action {Action-Result}."""

    name = "Access-Response-Specification"
    fields_desc = [
        ByteEnumField("choice", 1, ACCESS_RESPONSE_CHOICES),
        MultipleTypeField(
            [(ProtocolEnumField("result", 0, ACTION_RESULT), lambda pkt: pkt.choice == 3)],
            ProtocolEnumField("result", 0, DATA_ACCESS_RESULT),
        ),
    ]

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "choice", ACCESS_RESPONSE_CHOICES)
        return s

    def mysummary(self) -> str:
        names = ACTION_RESULT if self.choice == 3 else DATA_ACCESS_RESULT
        kind = ACCESS_RESPONSE_CHOICES.get(self.choice, str(self.choice)).removeprefix(
            "access-response-")
        return f"{kind} {names.get(self.result, self.result)}"


def _head(pkt: Packet) -> str:
    ident = split_long_invoke_id_and_priority(pkt.long_invoke_id_and_priority or 0)
    text = f"{pkt.apdu_name} id {ident['long_invoke_id']}"
    if pkt.date_time:
        text += f" at {format_date_time(pkt.date_time)}"
    return text


@register
class AccessRequest(APDUBase):
    """Access-Request: long-invoke-id-and-priority, date-time, Access-Request-Body
    (SEQUENCE OF Access-Request-Specification, SEQUENCE OF Data)."""

    apdu_tag = ACCESS_REQUEST
    apdu_name = "access-request"
    fields_desc = [
        ByteEnumField("tag", ACCESS_REQUEST, TAG_NAMES),
        LongInvokeIdAndPriorityField(),
        *date_time(),
        *sequence_of("access_request_specification", AccessRequestSpecification),
        *sequence_of("access_request_list_of_data", Data),
    ]

    def mysummary(self) -> str:
        items = ", ".join(s.mysummary() for s in self.access_request_specification)
        return f"{_head(self)} [{items}]"


@register
class AccessResponse(APDUBase):
    """Access-Response: long-invoke-id-and-priority, date-time, Access-Response-Body
    (access-request-specification OPTIONAL, SEQUENCE OF Data, SEQUENCE OF
    Access-Response-Specification)."""

    apdu_tag = ACCESS_RESPONSE
    apdu_name = "access-response"
    fields_desc = [
        ByteEnumField("tag", ACCESS_RESPONSE, TAG_NAMES),
        LongInvokeIdAndPriorityField(),
        *date_time(),
        *optional("access_request_specification",
                  CountField("access_request_specification_count", None,
                             count_of="access_request_specification"),
                  SequenceOfField("access_request_specification", AccessRequestSpecification,
                                  "access_request_specification_count")),
        *sequence_of("access_response_list_of_data", Data),
        *sequence_of("access_response_specification", AccessResponseSpecification),
    ]

    def mysummary(self) -> str:
        items = ", ".join(s.mysummary() for s in self.access_response_specification)
        return f"{_head(self)} [{items}]"
