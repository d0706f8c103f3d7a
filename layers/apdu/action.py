"""action-request (C3) and action-response (C7) with all their CHOICE variants (notes §3.5)."""

from __future__ import annotations

from scapy.fields import IntField

from ..axdr import CosemMethodDescriptor, Data
from .base import APDUBase, register
from .common import (
    ActionResponseWithOptionalData,
    ChoiceAPDU,
    DataValueField,
    DescriptorField,
    InvokeIdAndPriorityField,
    UnknownChoice,
    choice_header,
    datablock_sa,
    optional,
    sequence_of,
    summarize_action_response,
    summarize_data,
    summarize_datablock,
    summarize_descriptor,
    unknown_choice_fields,
)

ACTION_REQUEST = 0xC3
ACTION_RESPONSE = 0xC7

ACTION_REQUEST_CHOICES = {
    1: "action-request-normal", 2: "action-request-next-pblock", 3: "action-request-with-list",
    4: "action-request-with-first-pblock", 5: "action-request-with-list-and-first-pblock",
    6: "action-request-with-pblock",
}
ACTION_RESPONSE_CHOICES = {
    1: "action-response-normal", 2: "action-response-with-pblock",
    3: "action-response-with-list", 4: "action-response-next-pblock",
}


def _methods(pkt: APDUBase) -> str:
    return ", ".join(summarize_descriptor(d, "method") for d in pkt.cosem_method_descriptor_list)


# action-request ------------------------------------------------------------------------------

class ActionRequestNormal(APDUBase):
    """Action-Request-Normal: invoke-id, method descriptor,
    method-invocation-parameters OPTIONAL."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    variant = "normal"
    fields_desc = [
        *choice_header(ACTION_REQUEST, 1, ACTION_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        DescriptorField("cosem_method_descriptor", CosemMethodDescriptor),
        *optional("method_invocation_parameters", DataValueField("method_invocation_parameters")),
    ]

    def mysummary(self) -> str:
        method = summarize_descriptor(self.cosem_method_descriptor, "method")
        text = f"action-request normal {method}"
        if self.method_invocation_parameters is not None:
            text += f" ({summarize_data(self.method_invocation_parameters)})"
        return text


class ActionRequestNextPblock(APDUBase):
    """Action-Request-Next-Pblock: invoke-id, block-number of the last block received."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    variant = "next-pblock"
    fields_desc = [
        *choice_header(ACTION_REQUEST, 2, ACTION_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        IntField("block_number", 1),
    ]

    def mysummary(self) -> str:
        return f"action-request next-pblock block {self.block_number}"


class ActionRequestWithList(APDUBase):
    """Action-Request-With-List: SEQUENCE OF method descriptor, SEQUENCE OF Data parameters."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    variant = "with-list"
    fields_desc = [
        *choice_header(ACTION_REQUEST, 3, ACTION_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *sequence_of("cosem_method_descriptor_list", CosemMethodDescriptor),
        *sequence_of("method_invocation_parameters", Data),
    ]

    def mysummary(self) -> str:
        return f"action-request with-list [{_methods(self)}]"


class ActionRequestWithFirstPblock(APDUBase):
    """Action-Request-With-First-Pblock: invoke-id, method descriptor, DataBlock-SA."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    variant = "with-first-pblock"
    fields_desc = [
        *choice_header(ACTION_REQUEST, 4, ACTION_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        DescriptorField("cosem_method_descriptor", CosemMethodDescriptor),
        *datablock_sa(),
    ]

    def mysummary(self) -> str:
        return (f"action-request with-first-pblock "
                f"{summarize_descriptor(self.cosem_method_descriptor, 'method')} "
                f"{summarize_datablock(self)}")


class ActionRequestWithListAndFirstPblock(APDUBase):
    """Action-Request-With-List-And-First-Pblock: SEQUENCE OF method descriptor, DataBlock-SA."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    variant = "with-list-and-first-pblock"
    fields_desc = [
        *choice_header(ACTION_REQUEST, 5, ACTION_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *sequence_of("cosem_method_descriptor_list", CosemMethodDescriptor),
        *datablock_sa(),
    ]

    def mysummary(self) -> str:
        return (f"action-request with-list-and-first-pblock [{_methods(self)}] "
                f"{summarize_datablock(self)}")


class ActionRequestWithPblock(APDUBase):
    """Action-Request-With-Pblock: invoke-id, DataBlock-SA."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    variant = "with-pblock"
    fields_desc = [
        *choice_header(ACTION_REQUEST, 6, ACTION_REQUEST_CHOICES),
        InvokeIdAndPriorityField(),
        *datablock_sa(),
    ]

    def mysummary(self) -> str:
        return f"action-request with-pblock {summarize_datablock(self)}"


class ActionRequestUnknown(UnknownChoice):
    """action-request with an undefined choice byte."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    fields_desc = unknown_choice_fields(ACTION_REQUEST, ACTION_REQUEST_CHOICES)


@register
class ActionRequest(ChoiceAPDU):
    """ACTION-Request CHOICE: `ActionRequest(b)` gives the variant class for `b[1]`."""

    apdu_tag = ACTION_REQUEST
    apdu_name = "action-request"
    fields_desc = choice_header(ACTION_REQUEST, 1, ACTION_REQUEST_CHOICES)
    variants = {1: ActionRequestNormal, 2: ActionRequestNextPblock, 3: ActionRequestWithList,
                4: ActionRequestWithFirstPblock, 5: ActionRequestWithListAndFirstPblock,
                6: ActionRequestWithPblock}
    unknown_variant = ActionRequestUnknown


# action-response -----------------------------------------------------------------------------

class ActionResponseNormal(APDUBase):
    """Action-Response-Normal: invoke-id, Action-Response-With-Optional-Data (inline:
    `result`, `return_parameters_present`, `return_parameters` Get-Data-Result)."""

    apdu_tag = ACTION_RESPONSE
    apdu_name = "action-response"
    variant = "normal"
    fields_desc = [
        *choice_header(ACTION_RESPONSE, 1, ACTION_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *ActionResponseWithOptionalData.fields_desc,
    ]

    def mysummary(self) -> str:
        return f"action-response normal: {summarize_action_response(self)}"


class ActionResponseWithPblock(APDUBase):
    """Action-Response-With-Pblock: invoke-id, DataBlock-SA."""

    apdu_tag = ACTION_RESPONSE
    apdu_name = "action-response"
    variant = "with-pblock"
    fields_desc = [
        *choice_header(ACTION_RESPONSE, 2, ACTION_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *datablock_sa(),
    ]

    def mysummary(self) -> str:
        return f"action-response with-pblock {summarize_datablock(self)}"


class ActionResponseWithList(APDUBase):
    """Action-Response-With-List: invoke-id, SEQUENCE OF Action-Response-With-Optional-Data."""

    apdu_tag = ACTION_RESPONSE
    apdu_name = "action-response"
    variant = "with-list"
    fields_desc = [
        *choice_header(ACTION_RESPONSE, 3, ACTION_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        *sequence_of("list_of_responses", ActionResponseWithOptionalData),
    ]

    def mysummary(self) -> str:
        items = ", ".join(r.mysummary() for r in self.list_of_responses)
        return f"action-response with-list [{items}]"


class ActionResponseNextPblock(APDUBase):
    """Action-Response-Next-Pblock: invoke-id, block-number of the last block received."""

    apdu_tag = ACTION_RESPONSE
    apdu_name = "action-response"
    variant = "next-pblock"
    fields_desc = [
        *choice_header(ACTION_RESPONSE, 4, ACTION_RESPONSE_CHOICES),
        InvokeIdAndPriorityField(),
        IntField("block_number", 1),
    ]

    def mysummary(self) -> str:
        return f"action-response next-pblock block {self.block_number}"


class ActionResponseUnknown(UnknownChoice):
    """action-response with an undefined choice byte."""

    apdu_tag = ACTION_RESPONSE
    apdu_name = "action-response"
    fields_desc = unknown_choice_fields(ACTION_RESPONSE, ACTION_RESPONSE_CHOICES)


@register
class ActionResponse(ChoiceAPDU):
    """ACTION-Response CHOICE: `ActionResponse(b)` gives the variant class for `b[1]`."""

    apdu_tag = ACTION_RESPONSE
    apdu_name = "action-response"
    fields_desc = choice_header(ACTION_RESPONSE, 1, ACTION_RESPONSE_CHOICES)
    variants = {1: ActionResponseNormal, 2: ActionResponseWithPblock, 3: ActionResponseWithList,
                4: ActionResponseNextPblock}
    unknown_variant = ActionResponseUnknown
