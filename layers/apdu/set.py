"""set-request (C1) and set-response (C5) with all their CHOICE variants (notes §3.5)."""

from __future__ import annotations

from scapy.fields import IntField

from ..axdr import Data
from .base import APDUBase, register
from .common import (
    DATA_ACCESS_RESULT,
    ChoiceAPDU,
    CosemAttributeDescriptorWithSelection,
    DataValueField,
    InvokeIdAndPriorityField,
    ProtocolEnumField,
    UnknownChoice,
    choice_header,
    datablock_sa,
    descriptor_with_selection,
    enum_list,
    sequence_of,
    summarize_data,
    summarize_datablock,
    summarize_descriptor,
    unknown_choice_fields,
)

SET_REQUEST = 0xC1
SET_RESPONSE = 0xC5

SET_REQUEST_CHOICES = {
    1: "set-request-normal", 2: "set-request-with-first-datablock",
    3: "set-request-with-datablock", 4: "set-request-with-list",
    5: "set-request-with-list-and-first-datablock",
}
SET_RESPONSE_CHOICES = {
    1: "set-response-normal", 2: "set-response-datablock", 3: "set-response-last-datablock",
    4: "set-response-last-datablock-with-list", 5: "set-response-with-list",
}


def _results(results: list[int]) -> str:
    return ", ".join(DATA_ACCESS_RESULT.get(r, str(r)) for r in results)


# set-request ---------------------------------------------------------------------------------

class SetRequestNormal(APDUBase):
    """Set-Request-Normal: invoke-id, attribute descriptor, access-selection OPTIONAL, value."""

    apdu_tag = SET_REQUEST
    apdu_name = "set-request"
    variant = "normal"
    fields_desc = [
        *choice_header(SET_REQUEST, 1, SET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *descriptor_with_selection(),
        DataValueField("value"),
    ]

    def mysummary(self) -> str:
        return (f"set-request normal {summarize_descriptor(self.cosem_attribute_descriptor)} = "
                f"{summarize_data(self.value)}")


class SetRequestWithFirstDatablock(APDUBase):
    """Set-Request-With-First-Datablock: descriptor, access-selection OPTIONAL, DataBlock-SA."""

    apdu_tag = SET_REQUEST
    apdu_name = "set-request"
    variant = "with-first-datablock"
    fields_desc = [
        *choice_header(SET_REQUEST, 2, SET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *descriptor_with_selection(),
        *datablock_sa(),
    ]

    def mysummary(self) -> str:
        return (f"set-request with-first-datablock "
                f"{summarize_descriptor(self.cosem_attribute_descriptor)} "
                f"{summarize_datablock(self)}")


class SetRequestWithDatablock(APDUBase):
    """Set-Request-With-Datablock: invoke-id, DataBlock-SA."""

    apdu_tag = SET_REQUEST
    apdu_name = "set-request"
    variant = "with-datablock"
    fields_desc = [
        *choice_header(SET_REQUEST, 3, SET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *datablock_sa(),
    ]

    def mysummary(self) -> str:
        return f"set-request with-datablock {summarize_datablock(self)}"


class SetRequestWithList(APDUBase):
    """Set-Request-With-List: descriptors with selection, then the values."""

    apdu_tag = SET_REQUEST
    apdu_name = "set-request"
    variant = "with-list"
    fields_desc = [
        *choice_header(SET_REQUEST, 4, SET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *sequence_of("attribute_descriptor_list", CosemAttributeDescriptorWithSelection),
        *sequence_of("value_list", Data),
    ]

    def mysummary(self) -> str:
        items = ", ".join(d.mysummary() for d in self.attribute_descriptor_list)
        return f"set-request with-list [{items}]"


class SetRequestWithListAndFirstDatablock(APDUBase):
    """Set-Request-With-List-And-First-Datablock: descriptors with selection, DataBlock-SA."""

    apdu_tag = SET_REQUEST
    apdu_name = "set-request"
    variant = "with-list-and-first-datablock"
    fields_desc = [
        *choice_header(SET_REQUEST, 5, SET_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *sequence_of("attribute_descriptor_list", CosemAttributeDescriptorWithSelection),
        *datablock_sa(),
    ]

    def mysummary(self) -> str:
        items = ", ".join(d.mysummary() for d in self.attribute_descriptor_list)
        return f"set-request with-list-and-first-datablock [{items}] {summarize_datablock(self)}"


class SetRequestUnknown(UnknownChoice):
    """set-request with an undefined choice byte."""

    apdu_tag = SET_REQUEST
    apdu_name = "set-request"
    fields_desc = unknown_choice_fields(SET_REQUEST, SET_REQUEST_CHOICES)


@register
class SetRequest(ChoiceAPDU):
    """SET-Request CHOICE: `SetRequest(b)` gives the variant class for `b[1]`."""

    apdu_tag = SET_REQUEST
    apdu_name = "set-request"
    fields_desc = choice_header(SET_REQUEST, 1, SET_REQUEST_CHOICES)
    variants = {1: SetRequestNormal, 2: SetRequestWithFirstDatablock, 3: SetRequestWithDatablock,
                4: SetRequestWithList, 5: SetRequestWithListAndFirstDatablock}
    unknown_variant = SetRequestUnknown


# set-response --------------------------------------------------------------------------------

class SetResponseNormal(APDUBase):
    """Set-Response-Normal: invoke-id, Data-Access-Result."""

    apdu_tag = SET_RESPONSE
    apdu_name = "set-response"
    variant = "normal"
    fields_desc = [
        *choice_header(SET_RESPONSE, 1, SET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        ProtocolEnumField("result", 0, DATA_ACCESS_RESULT),
    ]

    def mysummary(self) -> str:
        return f"set-response normal: {_results([self.result])}"


class SetResponseDatablock(APDUBase):
    """Set-Response-Datablock: invoke-id, block-number acknowledged."""

    apdu_tag = SET_RESPONSE
    apdu_name = "set-response"
    variant = "datablock"
    fields_desc = [
        *choice_header(SET_RESPONSE, 2, SET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        IntField("block_number", 1),
    ]

    def mysummary(self) -> str:
        return f"set-response datablock block {self.block_number}"


class SetResponseLastDatablock(APDUBase):
    """Set-Response-Last-Datablock: invoke-id, Data-Access-Result, block-number."""

    apdu_tag = SET_RESPONSE
    apdu_name = "set-response"
    variant = "last-datablock"
    fields_desc = [
        *choice_header(SET_RESPONSE, 3, SET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        ProtocolEnumField("result", 0, DATA_ACCESS_RESULT),
        IntField("block_number", 1),
    ]

    def mysummary(self) -> str:
        return f"set-response last-datablock block {self.block_number}: {_results([self.result])}"


class SetResponseLastDatablockWithList(APDUBase):
    """Set-Response-Last-Datablock-With-List: SEQUENCE OF Data-Access-Result, block-number."""

    apdu_tag = SET_RESPONSE
    apdu_name = "set-response"
    variant = "last-datablock-with-list"
    fields_desc = [
        *choice_header(SET_RESPONSE, 4, SET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *enum_list("result", DATA_ACCESS_RESULT),
        IntField("block_number", 1),
    ]

    def mysummary(self) -> str:
        return (f"set-response last-datablock-with-list block {self.block_number}: "
                f"[{_results(self.result)}]")


class SetResponseWithList(APDUBase):
    """Set-Response-With-List: invoke-id, SEQUENCE OF Data-Access-Result."""

    apdu_tag = SET_RESPONSE
    apdu_name = "set-response"
    variant = "with-list"
    fields_desc = [
        *choice_header(SET_RESPONSE, 5, SET_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *enum_list("result", DATA_ACCESS_RESULT),
    ]

    def mysummary(self) -> str:
        return f"set-response with-list [{_results(self.result)}]"


class SetResponseUnknown(UnknownChoice):
    """set-response with an undefined choice byte."""

    apdu_tag = SET_RESPONSE
    apdu_name = "set-response"
    fields_desc = unknown_choice_fields(SET_RESPONSE, SET_RESPONSE_CHOICES)


@register
class SetResponse(ChoiceAPDU):
    """SET-Response CHOICE: `SetResponse(b)` gives the variant class for `b[1]`."""

    apdu_tag = SET_RESPONSE
    apdu_name = "set-response"
    fields_desc = choice_header(SET_RESPONSE, 1, SET_RESPONSE_CHOICES)
    variants = {1: SetResponseNormal, 2: SetResponseDatablock, 3: SetResponseLastDatablock,
                4: SetResponseLastDatablockWithList, 5: SetResponseWithList}
    unknown_variant = SetResponseUnknown
