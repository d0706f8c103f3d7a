"""Short-name (SN) services (notes §3.7): ReadRequest 05, ReadResponse 0C, WriteRequest 06,
WriteResponse 0D, UnconfirmedWriteRequest 16, InformationReportRequest 18."""

from __future__ import annotations

from scapy.fields import ByteEnumField, ByteField, ConditionalField, ShortField, XShortField

from ..axdr import Data
from ..fields import length_prefixed
from ..packet import DLMSElement
from .base import TAG_NAMES, APDUBase, register
from .common import (
    DATA_ACCESS_RESULT,
    BooleanField,
    DataValueField,
    ProtocolEnumField,
    check_choice,
    date_time,
    format_date_time,
    sequence_of,
    summarize_data,
    when,
)

READ_REQUEST = 0x05
WRITE_REQUEST = 0x06
READ_RESPONSE = 0x0C
WRITE_RESPONSE = 0x0D
UNCONFIRMED_WRITE_REQUEST = 0x16
INFORMATION_REPORT_REQUEST = 0x18

VARIABLE_ACCESS_CHOICES = {
    2: "variable-name", 4: "parameterized-access", 5: "block-number-access",
    6: "read-data-block-access", 7: "write-data-block-access",
}
READ_RESPONSE_CHOICES = {0: "data", 1: "data-access-error", 2: "data-block-result",
                         3: "block-number"}
WRITE_RESPONSE_CHOICES = {0: "success", 1: "data-access-error", 2: "block-number"}


class VariableAccessSpecification(DLMSElement):
    """Variable-Access-Specification CHOICE: variable-name (ObjectName), parameterized-access
    {variable-name, selector, parameter}, block-number-access {block-number},
    read-data-block-access {last-block, block-number, raw-data},
    write-data-block-access {last-block, block-number}."""

    name = "Variable-Access-Specification"
    fields_desc = [
        ByteEnumField("choice", 2, VARIABLE_ACCESS_CHOICES),
        ConditionalField(XShortField("variable_name", 0), lambda pkt: pkt.choice in (2, 4)),
        ConditionalField(ByteField("selector", 0), lambda pkt: pkt.choice == 4),
        ConditionalField(DataValueField("parameter"), lambda pkt: pkt.choice == 4),
        ConditionalField(BooleanField("last_block", 1), lambda pkt: pkt.choice in (6, 7)),
        ConditionalField(ShortField("block_number", 1), lambda pkt: pkt.choice in (5, 6, 7)),
        *when(lambda pkt: pkt.choice == 6, *length_prefixed("raw_data")),
    ]

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "choice", VARIABLE_ACCESS_CHOICES)
        return s

    def mysummary(self) -> str:
        if self.choice == 2:
            return f"0x{self.variable_name:04x}"
        if self.choice == 4:
            return f"0x{self.variable_name:04x} selector {self.selector}"
        text = f"{VARIABLE_ACCESS_CHOICES.get(self.choice, self.choice)} block {self.block_number}"
        return text + (" (last)" if self.choice in (6, 7) and self.last_block else "")


class ReadResponseItem(DLMSElement):
    """One ReadResponse CHOICE: data, data-access-error, data-block-result {last-block,
    block-number, raw-data} or block-number."""

    name = "ReadResponse item"
    fields_desc = [
        ByteEnumField("choice", 0, READ_RESPONSE_CHOICES),
        ConditionalField(DataValueField("data"), lambda pkt: pkt.choice == 0),
        ConditionalField(ProtocolEnumField("data_access_error", 0, DATA_ACCESS_RESULT),
                         lambda pkt: pkt.choice == 1),
        ConditionalField(BooleanField("last_block", 1), lambda pkt: pkt.choice == 2),
        ConditionalField(ShortField("block_number", 1), lambda pkt: pkt.choice in (2, 3)),
        *when(lambda pkt: pkt.choice == 2, *length_prefixed("raw_data")),
    ]

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "choice", READ_RESPONSE_CHOICES)
        return s

    def mysummary(self) -> str:
        if self.choice == 0:
            return summarize_data(self.data)
        if self.choice == 1:
            return f"data-access-error {DATA_ACCESS_RESULT.get(self.data_access_error, '?')}"
        if self.choice == 2:
            return (f"data-block-result block {self.block_number}"
                    f"{' (last)' if self.last_block else ''}, {len(self.raw_data or b'')} bytes")
        return f"block-number {self.block_number}"


class WriteResponseItem(DLMSElement):
    """One WriteResponse CHOICE: success, data-access-error or block-number."""

    name = "WriteResponse item"
    fields_desc = [
        ByteEnumField("choice", 0, WRITE_RESPONSE_CHOICES),
        ConditionalField(ProtocolEnumField("data_access_error", 0, DATA_ACCESS_RESULT),
                         lambda pkt: pkt.choice == 1),
        ConditionalField(ShortField("block_number", 1), lambda pkt: pkt.choice == 2),
    ]

    def post_dissect(self, s: bytes) -> bytes:
        check_choice(self, "choice", WRITE_RESPONSE_CHOICES)
        return s

    def mysummary(self) -> str:
        if self.choice == 1:
            return f"data-access-error {DATA_ACCESS_RESULT.get(self.data_access_error, '?')}"
        if self.choice == 2:
            return f"block-number {self.block_number}"
        return WRITE_RESPONSE_CHOICES.get(self.choice, str(self.choice))


def _list(items: list) -> str:
    return "[" + ", ".join(i.mysummary() for i in items) + "]"


@register
class ReadRequest(APDUBase):
    """ReadRequest: SEQUENCE OF Variable-Access-Specification."""

    apdu_tag = READ_REQUEST
    apdu_name = "read-request"
    fields_desc = [
        ByteEnumField("tag", READ_REQUEST, TAG_NAMES),
        *sequence_of("variable_access_specification", VariableAccessSpecification),
    ]

    def mysummary(self) -> str:
        return f"read-request {_list(self.variable_access_specification)}"


@register
class ReadResponse(APDUBase):
    """ReadResponse: SEQUENCE OF CHOICE {data, data-access-error, data-block-result,
    block-number}."""

    apdu_tag = READ_RESPONSE
    apdu_name = "read-response"
    fields_desc = [
        ByteEnumField("tag", READ_RESPONSE, TAG_NAMES),
        *sequence_of("result", ReadResponseItem),
    ]

    def mysummary(self) -> str:
        return f"read-response {_list(self.result)}"


@register
class WriteRequest(APDUBase):
    """WriteRequest: SEQUENCE OF Variable-Access-Specification, SEQUENCE OF Data."""

    apdu_tag = WRITE_REQUEST
    apdu_name = "write-request"
    fields_desc = [
        ByteEnumField("tag", WRITE_REQUEST, TAG_NAMES),
        *sequence_of("variable_access_specification", VariableAccessSpecification),
        *sequence_of("list_of_data", Data),
    ]

    def mysummary(self) -> str:
        return (f"{self.apdu_name} {_list(self.variable_access_specification)} = "
                f"[{', '.join(summarize_data(d) for d in self.list_of_data)}]")


@register
class UnconfirmedWriteRequest(APDUBase):
    """UnconfirmedWriteRequest: same body as WriteRequest."""

    apdu_tag = UNCONFIRMED_WRITE_REQUEST
    apdu_name = "unconfirmed-write-request"
    fields_desc = [
        ByteEnumField("tag", UNCONFIRMED_WRITE_REQUEST, TAG_NAMES),
        *WriteRequest.fields_desc[1:],
    ]

    mysummary = WriteRequest.mysummary


@register
class WriteResponse(APDUBase):
    """WriteResponse: SEQUENCE OF CHOICE {success, data-access-error, block-number}."""

    apdu_tag = WRITE_RESPONSE
    apdu_name = "write-response"
    fields_desc = [
        ByteEnumField("tag", WRITE_RESPONSE, TAG_NAMES),
        *sequence_of("result", WriteResponseItem),
    ]

    def mysummary(self) -> str:
        return f"write-response {_list(self.result)}"


@register
class InformationReportRequest(APDUBase):
    """InformationReportRequest: current-time OPTIONAL, SEQUENCE OF Variable-Access-Specification,
    SEQUENCE OF Data.

    current-time is read in both forms: as Gurux writes it, one length byte (`00` when absent,
    else `0C` + 12 date-time bytes), and as the A-XDR OPTIONAL of the ASN.1, a usage flag
    `01` before `0C` + 12 bytes (`current_time_present`, kept so the APDU builds as sent).
    """

    apdu_tag = INFORMATION_REPORT_REQUEST
    apdu_name = "information-report-request"
    fields_desc = [
        ByteEnumField("tag", INFORMATION_REPORT_REQUEST, TAG_NAMES),
        *date_time("current_time", flag=True),
        *sequence_of("variable_access_specification", VariableAccessSpecification),
        *sequence_of("list_of_data", Data),
    ]

    def mysummary(self) -> str:
        when_ = f" at {format_date_time(self.current_time)}" if self.current_time else ""
        return (f"information-report-request{when_} {_list(self.variable_access_specification)} = "
                f"[{', '.join(summarize_data(d) for d in self.list_of_data)}]")
