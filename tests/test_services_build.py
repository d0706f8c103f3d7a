"""Built service APDUs of every variant: lengths, counts and usage flags are computed on build, and
the bytes dissect back to the same class and values (hypothesis round trips)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.packet import Packet

import layers.apdu  # noqa: F401  (registers every APDU class)
from layers.apdu import access, action, gbt, get, notification, sn
from layers.apdu import set as set_
from layers.apdu.base import APDU
from layers.apdu.common import (
    ActionResponseWithOptionalData,
    CosemAttributeDescriptorWithSelection,
    GetDataResult,
)
from layers.axdr import (
    CosemAttributeDescriptor,
    CosemMethodDescriptor,
    Data,
    SelectiveAccessDescriptor,
)

try:  # tests/ as a package, or as a plain directory on sys.path
    from dissector.test_services import errors, rebuilt
except ImportError:
    from test_services import errors, rebuilt  # type: ignore[no-redef]

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
flag = st.sampled_from([0, 1])
blob = st.binary(max_size=300)  # crosses the 0x80 and 0x100 length-prefix boundaries
obis = st.binary(min_size=6, max_size=6)
dar = st.sampled_from([0, 1, 2, 3, 4, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 250])
action_result = st.sampled_from([0, 1, 2, 3, 4, 9, 11, 12, 13, 14, 15, 16, 250])
date_time = st.one_of(st.just(b""), st.binary(min_size=12, max_size=12))

_leaf = st.one_of(
    u8.map(lambda v: Data.of("unsigned", v)),
    st.integers(-(2**31), 2**31 - 1).map(lambda v: Data.of("double-long", v)),
    u16.map(lambda v: Data.of("long-unsigned", v)),
    blob.map(Data.octet_string),
    st.just(Data.of("null-data")),
    st.booleans().map(lambda v: Data.of("boolean", int(v))),
)
data = st.recursive(
    _leaf,
    lambda kids: st.one_of(st.lists(kids, max_size=3).map(lambda xs: Data.structure(*xs)),
                           st.lists(kids, max_size=3).map(lambda xs: Data.array(*xs))),
    max_leaves=6,
)
attr_desc = st.builds(lambda c, i, a: CosemAttributeDescriptor(class_id=c, instance_id=i,
                                                                attribute_id=a),
                      u16, obis, st.integers(-128, 127))
method_desc = st.builds(lambda c, i, m: CosemMethodDescriptor(class_id=c, instance_id=i,
                                                             method_id=m),
                        u16, obis, st.integers(-128, 127))
selection = st.one_of(st.none(), st.builds(
    lambda s, p: SelectiveAccessDescriptor(access_selector=s, access_parameters=p), u8, data))
with_selection = st.builds(
    lambda d, s: CosemAttributeDescriptorWithSelection(cosem_attribute_descriptor=d,
                                                       access_selection=s),
    attr_desc, selection)
get_data_result = st.one_of(
    data.map(lambda d: GetDataResult(result=0, data=d)),
    dar.map(lambda r: GetDataResult(result=1, data_access_result=r)),
)
action_response = st.builds(
    lambda r, p: ActionResponseWithOptionalData(result=r, return_parameters=p),
    action_result, st.one_of(st.none(), get_data_result))
datablock_sa = st.fixed_dictionaries({"last_block": flag, "block_number": u32, "raw_data": blob})
small = {"max_size": 4}


def roundtrip(pkt: Packet) -> Packet:
    """Build, dissect through `APDU`, and compare."""
    b = raw(pkt)
    back = APDU(b)
    assert type(back) is type(pkt), (type(back), b.hex())
    assert not errors(back), (b.hex(), errors(back))
    assert raw(back) == b
    assert rebuilt(back) == b
    back.mysummary()
    return back


def same(back: Packet, **values: Any) -> None:
    for name, value in values.items():
        got = back.getfieldval(name)
        if isinstance(value, Packet):
            assert raw(got) == raw(value), name
        elif isinstance(value, list):
            assert [raw(v) if isinstance(v, Packet) else v for v in got] == [
                raw(v) if isinstance(v, Packet) else v for v in value], name
        else:
            assert got == value, name


# --------------------------------------------------------------------------- get

@SETTINGS
@given(u8, attr_desc, selection)
def test_get_request_normal(iip: int, desc: Packet, sel: Packet | None) -> None:
    back = roundtrip(get.GetRequestNormal(invoke_id_and_priority=iip,
                                          cosem_attribute_descriptor=desc, access_selection=sel))
    same(back, invoke_id_and_priority=iip, cosem_attribute_descriptor=desc)
    assert back.access_selection_present == int(sel is not None)


@SETTINGS
@given(u8, u32)
def test_get_request_next(iip: int, block: int) -> None:
    built = get.GetRequest(choice=2, invoke_id_and_priority=iip, block_number=block)
    assert type(built) is get.GetRequestNext
    same(roundtrip(built), block_number=block)


@SETTINGS
@given(u8, st.lists(with_selection, **small))
def test_get_request_with_list(iip: int, items: list) -> None:
    back = roundtrip(get.GetRequestWithList(invoke_id_and_priority=iip,
                                            attribute_descriptor_list=items))
    same(back, attribute_descriptor_list=items)
    assert back.attribute_descriptor_list_count == len(items)


@SETTINGS
@given(u8, get_data_result)
def test_get_response_normal(iip: int, result: Packet) -> None:
    values = {"result": result.result}
    values.update({"data": result.data} if result.result == 0
                  else {"data_access_result": result.data_access_result})
    same(roundtrip(get.GetResponseNormal(invoke_id_and_priority=iip, **values)), **values)


@SETTINGS
@given(u8, flag, u32, st.one_of(blob.map(lambda b: {"result": 0, "raw_data": b}),
                                dar.map(lambda r: {"result": 1, "data_access_result": r})))
def test_get_response_with_datablock(iip: int, last: int, block: int, result: dict) -> None:
    back = roundtrip(get.GetResponseWithDatablock(invoke_id_and_priority=iip, last_block=last,
                                                  block_number=block, **result))
    same(back, last_block=last, block_number=block, **result)


@SETTINGS
@given(u8, st.lists(get_data_result, **small))
def test_get_response_with_list(iip: int, results: list) -> None:
    same(roundtrip(get.GetResponseWithList(invoke_id_and_priority=iip, result=results)),
         result=results)


# --------------------------------------------------------------------------- set

@SETTINGS
@given(u8, attr_desc, selection, data)
def test_set_request_normal(iip: int, desc: Packet, sel: Packet | None, value: Packet) -> None:
    same(roundtrip(set_.SetRequestNormal(invoke_id_and_priority=iip,
                                         cosem_attribute_descriptor=desc, access_selection=sel,
                                         value=value)),
         cosem_attribute_descriptor=desc, value=value)


@SETTINGS
@given(u8, attr_desc, selection, datablock_sa)
def test_set_request_with_first_datablock(iip: int, desc: Packet, sel: Packet | None,
                                          block: dict) -> None:
    same(roundtrip(set_.SetRequestWithFirstDatablock(
        invoke_id_and_priority=iip, cosem_attribute_descriptor=desc, access_selection=sel,
        **block)), **block)


@SETTINGS
@given(u8, datablock_sa)
def test_set_request_with_datablock(iip: int, block: dict) -> None:
    same(roundtrip(set_.SetRequestWithDatablock(invoke_id_and_priority=iip, **block)), **block)


@SETTINGS
@given(u8, st.lists(with_selection, **small), st.lists(data, **small))
def test_set_request_with_list(iip: int, items: list, values: list) -> None:
    same(roundtrip(set_.SetRequestWithList(invoke_id_and_priority=iip,
                                           attribute_descriptor_list=items, value_list=values)),
         attribute_descriptor_list=items, value_list=values)


@SETTINGS
@given(u8, st.lists(with_selection, **small), datablock_sa)
def test_set_request_with_list_and_first_datablock(iip: int, items: list, block: dict) -> None:
    same(roundtrip(set_.SetRequestWithListAndFirstDatablock(
        invoke_id_and_priority=iip, attribute_descriptor_list=items, **block)),
        attribute_descriptor_list=items, **block)


@SETTINGS
@given(u8, dar, u32, st.lists(dar, max_size=6))
def test_set_responses(iip: int, result: int, block: int, results: list) -> None:
    same(roundtrip(set_.SetResponseNormal(invoke_id_and_priority=iip, result=result)),
         result=result)
    same(roundtrip(set_.SetResponseDatablock(invoke_id_and_priority=iip, block_number=block)),
         block_number=block)
    same(roundtrip(set_.SetResponseLastDatablock(invoke_id_and_priority=iip, result=result,
                                                 block_number=block)),
         result=result, block_number=block)
    same(roundtrip(set_.SetResponseLastDatablockWithList(invoke_id_and_priority=iip,
                                                         result=results, block_number=block)),
         result=results, block_number=block)
    same(roundtrip(set_.SetResponseWithList(invoke_id_and_priority=iip, result=results)),
         result=results)


# --------------------------------------------------------------------------- action

@SETTINGS
@given(u8, method_desc, st.one_of(st.none(), data))
def test_action_request_normal(iip: int, desc: Packet, params: Packet | None) -> None:
    back = roundtrip(action.ActionRequestNormal(invoke_id_and_priority=iip,
                                                cosem_method_descriptor=desc,
                                                method_invocation_parameters=params))
    same(back, cosem_method_descriptor=desc)
    assert back.method_invocation_parameters_present == int(params is not None)


@SETTINGS
@given(u8, u32, st.lists(method_desc, **small), st.lists(data, **small), method_desc,
       datablock_sa)
def test_action_request_variants(iip: int, block: int, descs: list, params: list,
                                 desc: Packet, pblock: dict) -> None:
    same(roundtrip(action.ActionRequestNextPblock(invoke_id_and_priority=iip,
                                                  block_number=block)), block_number=block)
    same(roundtrip(action.ActionRequestWithList(invoke_id_and_priority=iip,
                                                cosem_method_descriptor_list=descs,
                                                method_invocation_parameters=params)),
         cosem_method_descriptor_list=descs, method_invocation_parameters=params)
    same(roundtrip(action.ActionRequestWithFirstPblock(invoke_id_and_priority=iip,
                                                       cosem_method_descriptor=desc, **pblock)),
         cosem_method_descriptor=desc, **pblock)
    same(roundtrip(action.ActionRequestWithListAndFirstPblock(
        invoke_id_and_priority=iip, cosem_method_descriptor_list=descs, **pblock)),
        cosem_method_descriptor_list=descs, **pblock)
    same(roundtrip(action.ActionRequestWithPblock(invoke_id_and_priority=iip, **pblock)),
         **pblock)


@SETTINGS
@given(u8, action_result, st.one_of(st.none(), get_data_result), st.lists(action_response, **small),
       u32, datablock_sa)
def test_action_responses(iip: int, result: int, params: Packet | None, responses: list,
                          block: int, pblock: dict) -> None:
    back = roundtrip(action.ActionResponseNormal(invoke_id_and_priority=iip, result=result,
                                                 return_parameters=params))
    same(back, result=result)
    assert back.return_parameters_present == int(params is not None)
    same(roundtrip(action.ActionResponseWithPblock(invoke_id_and_priority=iip, **pblock)),
         **pblock)
    same(roundtrip(action.ActionResponseWithList(invoke_id_and_priority=iip,
                                                 list_of_responses=responses)),
         list_of_responses=responses)
    same(roundtrip(action.ActionResponseNextPblock(invoke_id_and_priority=iip,
                                                   block_number=block)), block_number=block)


# --------------------------------------------------------------------------- notifications

@SETTINGS
@given(st.one_of(st.none(), st.binary(min_size=12, max_size=12)), attr_desc, data)
def test_event_notification(when: bytes | None, desc: Packet, value: Packet) -> None:
    back = roundtrip(notification.EventNotificationRequest(
        date_time=when, cosem_attribute_descriptor=desc, attribute_value=value))
    assert back.date_time_present == int(when is not None)
    same(back, cosem_attribute_descriptor=desc, attribute_value=value)


@SETTINGS
@given(u32, date_time, data)
def test_data_notification(ident: int, when: bytes, body: Packet) -> None:
    back = roundtrip(notification.DataNotification(long_invoke_id_and_priority=ident,
                                                   date_time=when, notification_body=body))
    same(back, long_invoke_id_and_priority=ident, date_time=when, notification_body=body)
    assert back.date_time_length == len(when)


@SETTINGS
@given(u32, date_time)
def test_data_notification_confirm(ident: int, when: bytes) -> None:
    same(roundtrip(notification.DataNotificationConfirm(long_invoke_id_and_priority=ident,
                                                        date_time=when)),
         long_invoke_id_and_priority=ident, date_time=when)


# --------------------------------------------------------------------------- access

access_request_spec = st.one_of(
    st.builds(lambda c, d: access.AccessRequestSpecification(choice=c,
                                                             cosem_attribute_descriptor=d),
              st.sampled_from([1, 2]), attr_desc),
    method_desc.map(lambda d: access.AccessRequestSpecification(choice=3,
                                                                cosem_method_descriptor=d)),
    st.builds(lambda c, d, s: access.AccessRequestSpecification(
        choice=c, cosem_attribute_descriptor=d, access_selection=s),
        st.sampled_from([4, 5]), attr_desc,
        st.builds(lambda s, p: SelectiveAccessDescriptor(access_selector=s, access_parameters=p),
                  u8, data)),
)
access_response_spec = st.one_of(
    st.builds(lambda c, r: access.AccessResponseSpecification(choice=c, result=r),
              st.sampled_from([1, 2]), dar),
    action_result.map(lambda r: access.AccessResponseSpecification(choice=3, result=r)),
)


@SETTINGS
@given(u32, date_time, st.lists(access_request_spec, **small), st.lists(data, **small))
def test_access_request(ident: int, when: bytes, specs: list, values: list) -> None:
    same(roundtrip(access.AccessRequest(long_invoke_id_and_priority=ident, date_time=when,
                                        access_request_specification=specs,
                                        access_request_list_of_data=values)),
         access_request_specification=specs, access_request_list_of_data=values)


@SETTINGS
@given(u32, date_time, st.one_of(st.none(), st.lists(access_request_spec, min_size=1, **small)),
       st.lists(data, **small), st.lists(access_response_spec, **small))
def test_access_response(ident: int, when: bytes, specs: list | None, values: list,
                         results: list) -> None:
    back = roundtrip(access.AccessResponse(long_invoke_id_and_priority=ident, date_time=when,
                                           access_request_specification=specs,
                                           access_response_list_of_data=values,
                                           access_response_specification=results))
    assert back.access_request_specification_present == int(specs is not None)
    same(back, access_response_list_of_data=values, access_response_specification=results)


# --------------------------------------------------------------------------- SN

variable_access = st.one_of(
    u16.map(lambda n: sn.VariableAccessSpecification(choice=2, variable_name=n)),
    st.builds(lambda n, s, p: sn.VariableAccessSpecification(choice=4, variable_name=n,
                                                             selector=s, parameter=p),
              u16, u8, data),
    u16.map(lambda b: sn.VariableAccessSpecification(choice=5, block_number=b)),
    st.builds(lambda last, b, raw_data: sn.VariableAccessSpecification(
        choice=6, last_block=last, block_number=b, raw_data=raw_data), flag, u16, blob),
    st.builds(lambda last, b: sn.VariableAccessSpecification(choice=7, last_block=last,
                                                             block_number=b), flag, u16),
)
read_result = st.one_of(
    data.map(lambda d: sn.ReadResponseItem(choice=0, data=d)),
    dar.map(lambda r: sn.ReadResponseItem(choice=1, data_access_error=r)),
    st.builds(lambda last, b, raw_data: sn.ReadResponseItem(choice=2, last_block=last,
                                                            block_number=b, raw_data=raw_data),
              flag, u16, blob),
    u16.map(lambda b: sn.ReadResponseItem(choice=3, block_number=b)),
)
write_result = st.one_of(
    st.just(sn.WriteResponseItem(choice=0)),
    dar.map(lambda r: sn.WriteResponseItem(choice=1, data_access_error=r)),
    u16.map(lambda b: sn.WriteResponseItem(choice=2, block_number=b)),
)


@SETTINGS
@given(st.lists(variable_access, **small), st.lists(data, **small), st.lists(read_result, **small),
       st.lists(write_result, **small), date_time)
def test_sn_services(specs: list, values: list, reads: list, writes: list, when: bytes) -> None:
    same(roundtrip(sn.ReadRequest(variable_access_specification=specs)),
         variable_access_specification=specs)
    same(roundtrip(sn.ReadResponse(result=reads)), result=reads)
    for cls in (sn.WriteRequest, sn.UnconfirmedWriteRequest):
        same(roundtrip(cls(variable_access_specification=specs, list_of_data=values)),
             variable_access_specification=specs, list_of_data=values)
    same(roundtrip(sn.WriteResponse(result=writes)), result=writes)
    same(roundtrip(sn.InformationReportRequest(current_time=when,
                                               variable_access_specification=specs,
                                               list_of_data=values)),
         current_time=when, variable_access_specification=specs, list_of_data=values)


# --------------------------------------------------------------------------- GBT, gateway

@SETTINGS
@given(flag, flag, st.integers(0, 63), u16, u16, blob)
def test_general_block_transfer(last: int, streaming: int, window: int, block: int, ack: int,
                                data_: bytes) -> None:
    back = roundtrip(gbt.GeneralBlockTransfer(last_block=last, streaming=streaming, window=window,
                                              block_number=block, block_number_ack=ack,
                                              block_data=data_))
    same(back, last_block=last, streaming=streaming, window=window, block_number=block,
         block_number_ack=ack, block_data=data_)
    assert raw(back)[1] == (last << 7) | (streaming << 6) | window


@SETTINGS
@given(u8, st.binary(max_size=20), u8, attr_desc)
def test_gateway(network: int, address: bytes, iip: int, desc: Packet) -> None:
    inner = get.GetRequestNormal(invoke_id_and_priority=iip, cosem_attribute_descriptor=desc)
    for cls in (gbt.GatewayRequest, gbt.GatewayResponse):
        back = roundtrip(cls(network_id=network, physical_device_address=address) / inner)
        same(back, network_id=network, physical_device_address=address)
        assert type(back.payload) is get.GetRequestNormal
        assert raw(back.payload) == raw(inner)


# --------------------------------------------------------------------------- arbitrary input

SERVICE_TAGS = [0x05, 0x06, 0x0C, 0x0D, 0x0F, 0x10, 0x16, 0x18, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4,
                0xC5, 0xC7, 0xD9, 0xDA, 0xE0, 0xE6, 0xE7]


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(SERVICE_TAGS), st.integers(0, 7), st.binary(max_size=48))
def test_arbitrary_bytes_never_raise(tag: int, choice: int, rest: bytes) -> None:
    b = bytes([tag, choice]) + rest
    pkt = APDU(b)
    pkt.summary()
    pkt.show(dump=True)
    if not errors(pkt) and tag not in (0xE6, 0xE7):  # a gateway's inner APDU is any layer
        assert raw(pkt) == b
