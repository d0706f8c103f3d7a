"""get-request (C0) and get-response (C4) with all their CHOICE variants (notes §3.5)."""

from __future__ import annotations

from scapy.fields import IntField

from .base import APDUBase, register
from .common import (
    DATABLOCK_G_CHOICES,
    GET_DATA_RESULT_CHOICES,
    ChoiceAPDU,
    CosemAttributeDescriptorWithSelection,
    GetDataResult,
    InvokeIdAndPriorityField,
    UnknownChoice,
    check_choice,
    choice_header,
    datablock_g,
    descriptor_with_selection,
    get_data_result,
    sequence_of,
    summarize_datablock,
    summarize_descriptor,
    summarize_get_data_result,
    unknown_choice_fields,
)

GET_REQUEST = 0xC0
GET_RESPONSE = 0xC4

GET_REQUEST_CHOICES = {1: "get-request-normal", 2: "get-request-next", 3: "get-request-with-list"}
GET_RESPONSE_CHOICES = {1: "get-response-normal", 2: "get-response-with-datablock",
                        3: "get-response-with-list"}


# get-request ---------------------------------------------------------------------------------

class GetRequestNormal(APDUBase):
    """Get-Request-Normal: invoke-id, attribute descriptor, access-selection OPTIONAL."""

    apdu_tag = GET_REQUEST
    apdu_name = "get-request"
    variant = "normal"
    fields_desc = [
        *choice_header(GET_REQUEST, 1, GET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *descriptor_with_selection(),
    ]

    def mysummary(self) -> str:
        text = f"get-request normal {summarize_descriptor(self.cosem_attribute_descriptor)}"
        if self.access_selection is not None:
            text += f" selector {self.access_selection.getfieldval('access_selector')}"
        return text


class GetRequestNext(APDUBase):
    """Get-Request-Next: invoke-id, block-number of the last block received."""

    apdu_tag = GET_REQUEST
    apdu_name = "get-request"
    variant = "next"
    fields_desc = [
        *choice_header(GET_REQUEST, 2, GET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        IntField("block_number", 1),
    ]

    def mysummary(self) -> str:
        return f"get-request next block {self.block_number}"


class GetRequestWithList(APDUBase):
    """Get-Request-With-List: invoke-id, SEQUENCE OF attribute descriptor with selection."""

    apdu_tag = GET_REQUEST
    apdu_name = "get-request"
    variant = "with-list"
    fields_desc = [
        *choice_header(GET_REQUEST, 3, GET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *sequence_of("attribute_descriptor_list", CosemAttributeDescriptorWithSelection),
    ]

    def mysummary(self) -> str:
        items = ", ".join(d.mysummary() for d in self.attribute_descriptor_list)
        return f"get-request with-list [{items}]"


class GetRequestUnknown(UnknownChoice):
    """get-request with an undefined choice byte."""

    apdu_tag = GET_REQUEST
    apdu_name = "get-request"
    fields_desc = unknown_choice_fields(GET_REQUEST, GET_REQUEST_CHOICES)


@register
class GetRequest(ChoiceAPDU):
    """GET-Request CHOICE: `GetRequest(b)` gives the variant class for `b[1]`."""

    apdu_tag = GET_REQUEST
    apdu_name = "get-request"
    fields_desc = choice_header(GET_REQUEST, 1, GET_REQUEST_CHOICES)
    variants = {1: GetRequestNormal, 2: GetRequestNext, 3: GetRequestWithList}
    unknown_variant = GetRequestUnknown


# get-response --------------------------------------------------------------------------------

class GetResponseNormal(APDUBase):
    """Get-Response-Normal: invoke-id, Get-Data-Result (`result` 0 data / 1 data-access-result)."""

    apdu_tag = GET_RESPONSE
    apdu_name = "get-response"
    variant = "normal"
    fields_desc = [
        *choice_header(GET_RESPONSE, 1, GET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *get_data_result(),
    ]

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "result", GET_DATA_RESULT_CHOICES)
        return s

    def mysummary(self) -> str:
        return f"get-response normal: {summarize_get_data_result(self)}"


class GetResponseWithDatablock(APDUBase):
    """Get-Response-With-Datablock: invoke-id, DataBlock-G (last-block, block-number, result)."""

    apdu_tag = GET_RESPONSE
    apdu_name = "get-response"
    variant = "with-datablock"
    fields_desc = [
        *choice_header(GET_RESPONSE, 2, GET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *datablock_g(),
    ]

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "result", DATABLOCK_G_CHOICES)
        return s

    def mysummary(self) -> str:
        return f"get-response with-datablock {summarize_datablock(self)}"


class GetResponseWithList(APDUBase):
    """Get-Response-With-List: invoke-id, SEQUENCE OF Get-Data-Result."""

    apdu_tag = GET_RESPONSE
    apdu_name = "get-response"
    variant = "with-list"
    fields_desc = [
        *choice_header(GET_RESPONSE, 3, GET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *sequence_of("result", GetDataResult),
    ]

    def mysummary(self) -> str:
        return f"get-response with-list [{', '.join(r.mysummary() for r in self.result)}]"


class GetResponseUnknown(UnknownChoice):
    """get-response with an undefined choice byte."""

    apdu_tag = GET_RESPONSE
    apdu_name = "get-response"
    fields_desc = unknown_choice_fields(GET_RESPONSE, GET_RESPONSE_CHOICES)


@register
class GetResponse(ChoiceAPDU):
    """GET-Response CHOICE: `GetResponse(b)` gives the variant class for `b[1]`."""

    apdu_tag = GET_RESPONSE
    apdu_name = "get-response"
    fields_desc = choice_header(GET_RESPONSE, 1, GET_RESPONSE_CHOICES)
    variants = {1: GetResponseNormal, 2: GetResponseWithDatablock, 3: GetResponseWithList}
    unknown_variant = GetResponseUnknown
