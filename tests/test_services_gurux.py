"""Service APDUs written by a third-party encoder (Gurux's Python library, PDU interface, in
process): every request and notification variant it can produce must dissect with the values it
was given, without error findings, and rebuild byte for byte."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from typing import Any

from scapy.compat import raw
from scapy.packet import Packet

import layers.apdu  # noqa: F401  (registers every APDU class)
from layers.apdu import access, action, gbt, get, notification, sn
from layers.apdu import set as set_
from layers.apdu.base import APDU
from layers.axdr import CosemAttributeDescriptor, CosemMethodDescriptor, Data

try:  # tests/ as a package, or as a plain directory on sys.path
    from dissector.test_services import check
except ImportError:
    from test_services import check  # type: ignore[no-redef]


from gurux_dlms import GXByteBuffer, GXDateTime, GXDLMSClient, GXDLMSTranslator
from gurux_dlms.enums import (
    Authentication,
    Conformance,
    DataType,
    InterfaceType,
    RequestTypes,
    TranslatorOutputType,
)
from gurux_dlms.GXDLMSGateway import GXDLMSGateway
from gurux_dlms.GXDLMSNotify import GXDLMSNotify
from gurux_dlms.objects import (
    GXDLMSCaptureObject,
    GXDLMSClock,
    GXDLMSData,
    GXDLMSProfileGeneric,
    GXDLMSRegister,
    GXDLMSScriptTable,
)

WHEN = datetime.datetime(2024, 1, 2, 3, 4, 5)
LN_CONFORMANCE = (Conformance.GET | Conformance.SET | Conformance.ACTION
                  | Conformance.MULTIPLE_REFERENCES | Conformance.SELECTIVE_ACCESS
                  | Conformance.BLOCK_TRANSFER_WITH_ACTION
                  | Conformance.BLOCK_TRANSFER_WITH_SET_OR_WRITE)


def frames(messages: Any) -> list[str]:
    """Gurux returns one list of frames per message; flatten to hex strings."""
    out: list[str] = []
    for m in messages if isinstance(messages, list | tuple) else [messages]:
        out.extend(frames(m) if isinstance(m, list | tuple) else [bytes(m).hex()])
    return out


def ln_client(max_pdu: int | None = None, extra: int = 0) -> GXDLMSClient:
    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.PDU)
    client.negotiatedConformance |= LN_CONFORMANCE | extra
    if max_pdu:
        client.settings.maxPduSize = max_pdu
    return client


def sn_client() -> GXDLMSClient:
    client = GXDLMSClient(False, 16, 1, Authentication.NONE, None, InterfaceType.PDU)
    client.negotiatedConformance |= (Conformance.READ | Conformance.WRITE
                                     | Conformance.MULTIPLE_REFERENCES
                                     | Conformance.PARAMETERIZED_ACCESS)
    return client


class WriteItem:
    """What Gurux's writeList reads from each item (its own GXWriteItem loses the target)."""

    def __init__(self, target: Any, index: int, type_: int) -> None:
        self.target, self.index, self.selector, self.parameters = target, index, 0, None
        self._type = type_

    def getDataType(self) -> int:  # Gurux's method name
        return self._type


def one(messages: Any) -> Packet:
    (hexstr,) = frames(messages)
    return check(hexstr)


def desc(pkt: Packet, member: str = "attribute_id") -> tuple[int, bytes, int]:
    return (pkt.class_id, pkt.instance_id, pkt.getfieldval(member))


# --------------------------------------------------------------------------- get / set / action

def test_get_request_normal_and_next() -> None:
    client = ln_client()
    pkt = one(client.read(GXDLMSRegister("1.0.1.8.0.255"), 2))
    assert type(pkt) is get.GetRequestNormal
    assert desc(pkt.cosem_attribute_descriptor) == (3, bytes([1, 0, 1, 8, 0, 255]), 2)
    assert pkt.access_selection_present == 0
    assert pkt.mysummary() == "get-request normal 1.0.1.8.0.255 attr 2 (register)"
    nxt = one([client.receiverReady(RequestTypes.DATABLOCK)])
    assert type(nxt) is get.GetRequestNext and nxt.block_number == 1


def test_get_request_with_list() -> None:
    pkt = one(ln_client().readList([(GXDLMSRegister("1.0.1.8.0.255"), 2),
                                    (GXDLMSClock("0.0.1.0.0.255"), 2)]))
    assert type(pkt) is get.GetRequestWithList
    assert [desc(d.cosem_attribute_descriptor)[0] for d in pkt.attribute_descriptor_list] == [3, 8]


def test_get_request_selective_access() -> None:
    client = ln_client()
    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    clock = GXDLMSClock("0.0.1.0.0.255")
    profile.captureObjects.append((clock, GXDLMSCaptureObject(2, 0)))
    by_entry = one(client.readRowsByEntry(profile, 1, 10))
    assert by_entry.access_selection.access_selector == 2
    assert [v.value for v in by_entry.access_selection.access_parameters.values] == [1, 10, 1, 0]
    by_range = one(client.readRowsByRange(profile, WHEN, WHEN + datetime.timedelta(hours=1)))
    assert by_range.access_selection.access_selector == 1
    assert by_range.access_selection.access_parameters.type == 2


def test_set_request_normal_and_with_list() -> None:
    client = ln_client()
    obj = GXDLMSData("0.0.96.1.0.255")
    obj.value = "ABC"
    pkt = one(client.write(obj, 2))
    assert type(pkt) is set_.SetRequestNormal
    assert pkt.value.type == 10 and pkt.value.value == b"ABC"
    other = GXDLMSData("0.0.96.1.1.255")
    other.value = 7
    pkt = one(client.writeList([WriteItem(obj, 2, DataType.OCTET_STRING),
                                WriteItem(other, 2, DataType.UINT16)]))
    assert type(pkt) is set_.SetRequestWithList
    assert pkt.attribute_descriptor_list_count == 2 and pkt.value_list_count == 2
    assert pkt.value_list[1].value == 7


def test_set_request_with_datablocks() -> None:
    obj = GXDLMSData("0.0.96.1.0.255")
    obj.value = "X" * 150
    pkts = [check(h) for h in frames(ln_client(max_pdu=64).write(obj, 2))]
    assert [type(p) for p in pkts] == [set_.SetRequestWithFirstDatablock] + [
        set_.SetRequestWithDatablock] * (len(pkts) - 1)
    assert [p.block_number for p in pkts] == list(range(1, len(pkts) + 1))
    assert [p.last_block for p in pkts] == [0] * (len(pkts) - 1) + [1]
    value = Data(b"".join(p.raw_data for p in pkts))
    assert value.type == 10 and value.value == b"X" * 150


def test_action_request_normal_and_pblocks() -> None:
    script = GXDLMSScriptTable("0.0.10.0.0.255")
    pkt = one(ln_client().method(script, 1, 1, DataType.UINT16))
    assert type(pkt) is action.ActionRequestNormal
    assert desc(pkt.cosem_method_descriptor, "method_id") == (9, bytes([0, 0, 10, 0, 0, 255]), 1)
    assert pkt.method_invocation_parameters.value == 1
    pkts = [check(h) for h in frames(ln_client(max_pdu=64).method(script, 1, b"Y" * 150,
                                                                  DataType.OCTET_STRING))]
    assert [type(p) for p in pkts] == [action.ActionRequestWithFirstPblock] + [
        action.ActionRequestWithPblock] * (len(pkts) - 1)
    assert [p.block_number for p in pkts] == list(range(1, len(pkts) + 1))
    assert pkts[-1].last_block and not pkts[0].last_block
    value = Data(b"".join(p.raw_data for p in pkts))
    assert value.type == 9 and value.value == b"Y" * 150


def test_general_block_transfer_carries_a_whole_apdu() -> None:
    obj = GXDLMSData("0.0.96.1.0.255")
    obj.value = "G" * 150
    client = ln_client(max_pdu=64, extra=Conformance.GENERAL_BLOCK_TRANSFER)
    blocks = [check(h) for h in frames(client.write(obj, 2))]
    assert all(type(b) is gbt.GeneralBlockTransfer for b in blocks) and len(blocks) > 1
    assert [b.block_number for b in blocks] == list(range(1, len(blocks) + 1))
    assert [b.last_block for b in blocks] == [0] * (len(blocks) - 1) + [1]
    inner = check(b"".join(b.block_data for b in blocks).hex())
    assert type(inner) is set_.SetRequestNormal and inner.value.value == b"G" * 150


def test_gateway_request() -> None:
    client = ln_client()
    gateway = GXDLMSGateway()
    gateway.networkId = 3
    gateway.physicalDeviceAddress = bytes.fromhex("0102030405060708")
    client.gateway = gateway
    pkt = one(client.read(GXDLMSRegister("1.0.1.8.0.255"), 2))
    assert type(pkt) is gbt.GatewayRequest
    assert pkt.network_id == 3 and pkt.physical_device_address == bytes.fromhex("0102030405060708")
    assert type(pkt.payload) is get.GetRequestNormal
    assert pkt.mysummary() == "gateway-request network 3 device 0102030405060708"
    assert pkt.summary().endswith("/ get-request normal 1.0.1.8.0.255 attr 2 (register)")


# --------------------------------------------------------------------------- notifications

def _u16(value: int) -> GXByteBuffer:
    bb = GXByteBuffer()
    bb.setUInt8(DataType.UINT16)
    bb.setUInt16(value)
    return bb


def test_data_notification() -> None:
    notify = GXDLMSNotify(True, 1, 16, InterfaceType.PDU)
    pkt = one(notify.generateDataNotificationMessages(None, _u16(5)))
    assert type(pkt) is notification.DataNotification
    assert pkt.date_time == b"" and pkt.notification_body.value == 5
    pkt = one(notify.generateDataNotificationMessages(GXDateTime(WHEN), _u16(6)))
    assert pkt.date_time_length == 12 and pkt.date_time[:4] == bytes([0x07, 0xE8, 1, 2])
    assert pkt.notification_body.value == 6


def test_event_notification() -> None:
    notify = GXDLMSNotify(True, 1, 16, InterfaceType.PDU)
    clock = GXDLMSClock("0.0.1.0.0.255")
    clock.time = GXDateTime(WHEN)
    pkt = one(notify.generateReport(GXDateTime(WHEN), [(clock, 2)]))
    assert type(pkt) is notification.EventNotificationRequest
    assert pkt.date_time_present == 0x09  # Gurux's flag byte: the Data octet-string tag
    assert pkt.date_time[:4] == bytes([0x07, 0xE8, 1, 2])
    assert desc(pkt.cosem_attribute_descriptor) == (8, bytes([0, 0, 1, 0, 0, 255]), 2)
    pkt = one(notify.generateReport(None, [(clock, 2)]))
    assert pkt.date_time_present == 0 and pkt.date_time is None


def test_information_report() -> None:
    notify = GXDLMSNotify(False, 1, 16, InterfaceType.PDU)
    obj = GXDLMSData("0.0.96.1.0.255")
    obj.shortName = 0x1000
    obj.value = 7
    pkt = one(notify.generateReport(None, [(obj, 2)]))
    assert type(pkt) is sn.InformationReportRequest
    assert pkt.current_time == b""
    assert [v.variable_name for v in pkt.variable_access_specification] == [0x1008]
    assert [d.value for d in pkt.list_of_data] == [7]


# --------------------------------------------------------------------------- short names

def test_sn_read_write() -> None:
    client = sn_client()
    obj = GXDLMSData("0.0.96.1.0.255")
    obj.shortName = 0x1000
    obj.value = 7
    pkt = one(client.read(obj, 2))
    assert type(pkt) is sn.ReadRequest
    assert [(v.choice, v.variable_name) for v in pkt.variable_access_specification] == [
        (2, 0x1008)]
    pkt = one(client.readList([(obj, 2), (obj, 3)]))
    assert [v.variable_name for v in pkt.variable_access_specification] == [0x1008, 0x1010]
    pkt = one(client.write(obj, 2))
    assert type(pkt) is sn.WriteRequest
    assert [v.variable_name for v in pkt.variable_access_specification] == [0x1008]
    assert [d.value for d in pkt.list_of_data] == [7]


def test_sn_parameterized_access() -> None:
    profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
    profile.shortName = 0x2000
    profile.captureObjects.append((GXDLMSClock("0.0.1.0.0.255"), GXDLMSCaptureObject(2, 0)))
    pkt = one(sn_client().readRowsByEntry(profile, 1, 10))
    (spec,) = pkt.variable_access_specification
    assert (spec.choice, spec.variable_name, spec.selector) == (4, 0x2008, 2)
    assert [v.value for v in spec.parameter.values] == [1, 10, 1, 0]


def test_everything_above_goes_through_apdu() -> None:
    pkt = APDU(bytes.fromhex(frames(ln_client().read(GXDLMSRegister("1.0.1.8.0.255"), 2))[0]))
    assert raw(pkt)[:2] == b"\xc0\x01"


# ------------------------------------------------------------- access (decoded by Gurux)

def _xml(pkt: Packet) -> Any:
    text = GXDLMSTranslator(TranslatorOutputType.SIMPLE_XML).pduToXml(GXByteBuffer(raw(pkt)))
    return ET.fromstring(text)


def test_access_request_and_response_read_by_gurux() -> None:
    """Gurux's client cannot write access APDUs (its accessRequest fails), but its translator
    reads them: our builds must mean to Gurux what they mean to us."""
    register = CosemAttributeDescriptor(class_id=3, instance_id=bytes([1, 0, 1, 8, 0, 255]),
                                        attribute_id=2)
    script = CosemMethodDescriptor(class_id=9, instance_id=bytes([0, 0, 10, 0, 0, 255]),
                                   method_id=1)
    request = access.AccessRequest(
        long_invoke_id_and_priority=0x40000005, date_time=b"",
        access_request_specification=[
            access.AccessRequestSpecification(choice=1, cosem_attribute_descriptor=register),
            access.AccessRequestSpecification(choice=3, cosem_method_descriptor=script)],
        access_request_list_of_data=[Data.of("null-data"), Data.of("long-unsigned", 1)])
    back = check(raw(request).hex())
    assert type(back) is access.AccessRequest
    root = _xml(request)
    assert root.tag == "AccessRequest"
    assert root.find("LongInvokeIdAndPriority").get("Value") == "40000005"
    specs = root.find("AccessRequestBody/AccessRequestSpecification")
    assert [s[0].tag for s in specs] == ["AccessRequestGet", "AccessRequestAction"]
    assert [s.find(".//ClassId").get("Value") for s in specs] == ["0003", "0009"]
    values = root.find("AccessRequestBody/AccessRequestListOfData")
    assert [v.tag for v in values] == ["None", "UInt16"]

    response = access.AccessResponse(
        long_invoke_id_and_priority=0x40000005, date_time=b"",
        access_response_list_of_data=[Data.of("double-long-unsigned", 7), Data.of("null-data")],
        access_response_specification=[access.AccessResponseSpecification(choice=1, result=0),
                                       access.AccessResponseSpecification(choice=3, result=0)])
    back = check(raw(response).hex())
    assert back.access_request_specification_present == 0
    root = _xml(response)
    assert root.tag == "AccessResponse"
    body = root.find("AccessResponseBody")
    assert [v.tag for v in body.find("AccessResponseListOfData")] == ["UInt32", "None"]
    assert [s[0].tag for s in body.find("AccessResponseSpecification")] == [
        "AccessResponseGet", "AccessResponseAction"]
