"""The common plain xDLMS APDUs read without Scapy Packets: the same results as the Packet path.

`decode_apdu(data)` gives what a record needs of `APDU(data)` (its name, the `packet_fields`
JSON as text, `mysummary()`, invoke-id, method, result, first octet-string) for get-request
normal and next, get-response normal and with-datablock, set-request and set-response normal,
action-request and action-response normal, and data-notification, with the A-XDR Data types of
`layers.fast_axdr`. Anything else, and any input on which the Packet path would attach a finding
(malformed, truncated, trailing bytes, an undefined choice or result value, nesting past the
bounds), gives None: the Packet path decides. tests/test_fast_decode.py proves the two agree.

Names and field forms are read from the layer classes and their tables; the summary sentences
follow the layers' `mysummary` methods, which need Packets.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from scapy.packet import Packet

from .apdu.action import ActionRequestNormal, ActionResponseNormal
from .apdu.common import (
    ACTION_RESULT,
    DATA_ACCESS_RESULT,
    MAX_LIST,
    CosemAttributeDescriptorWithSelection,
    GetDataResult,
    format_date_time,
)
from .apdu.get import (
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
)
from .apdu.notification import DataNotification
from .apdu.set import SetRequestNormal, SetResponseNormal
from .axdr import CosemAttributeDescriptor, CosemMethodDescriptor, SelectiveAccessDescriptor
from .fast_axdr import (
    DATA_ENABLED,
    Unsure,
    data_summary,
    field_of,
    json_string,
    layer_name,
    named_text,
    named_texts,
    named_values,
    read_data,
    read_length,
    read_or_none,
    shown_name,
    shows_names,
)
from .obis import INTERFACE_CLASSES, obis_str


@dataclass(frozen=True, slots=True)
class FastApdu:
    """A plain APDU as the fast path read it; each attribute equals the Packet path's."""

    name: str  # APDU(data).apdu_name
    text: str  # json.dumps(packet_fields(APDU(data))), made without the dict
    summary: str  # APDU(data).mysummary()
    invoke_id: int | None  # the tracker's invoke_id()
    method: tuple[int, int] | None  # the tracker's method_of(): (class_id, method_id)
    result: int | None  # the first `result` field of the tree
    octet_string: bytes | None  # the first Data octet-string value of the tree

    @property
    def fields(self) -> dict[str, Any]:
        """packet_fields(APDU(data)), read back from `text`."""
        return json.loads(self.text)


_U32 = struct.Struct(">I").unpack_from
_NEW = object.__new__
_SET = tuple(FastApdu.__dict__[n].__set__ for n in (
    "name", "text", "summary", "invoke_id", "method", "result", "octet_string"))


def _apdu(name: str, text: str, summary: str, invoke_id: int | None,
          method: tuple[int, int] | None, result: int | None,
          octet_string: bytes | None) -> FastApdu:
    """`FastApdu(...)` at half the cost: its slots set directly, past the frozen check."""
    apdu = _NEW(FastApdu)
    s0, s1, s2, s3, s4, s5, s6 = _SET
    s0(apdu, name)
    s1(apdu, text)
    s2(apdu, summary)
    s3(apdu, invoke_id)
    s4(apdu, method)
    s5(apdu, result)
    s6(apdu, octet_string)
    return apdu


class _Variant:
    """What every variant of one layer class writes first: its name, tag and choice."""

    __slots__ = ("choice", "choice_name", "layer", "opening", "prefix", "tag", "tag_name")

    def __init__(self, cls: type[Packet]) -> None:
        self.layer: str = cls.apdu_name
        self.tag: int = cls.apdu_tag
        self.tag_name = named_values(cls, "tag")[self.tag]
        has_choice = any(f.name == "choice" for f in cls.fields_desc)
        choice = field_of(cls, "choice").default if has_choice else None
        self.choice: int | None = choice
        self.choice_name = named_values(cls, "choice")[choice] if choice is not None else None
        # the JSON text of the object so far: layer and tag; then choice and invoke-id
        self.opening = (f'{{"layer": {json_string(self.layer)}, '
                        f'"tag": {named_text(self.tag, self.tag_name)}')
        self.prefix = "" if choice is None else (
            f'{self.opening}, "choice": {named_text(choice, self.choice_name)}, '
            '"invoke_id_and_priority": ')

    def head(self, inv: int) -> str:
        """layer, tag, choice and invoke-id-and-priority, as `packet_fields` writes them
        (tag and choice always by name: `ENABLED` checks it): the JSON text of an object
        that is not closed yet."""
        return self.prefix + _INVOKE_NAMES[inv]


_GET_NORMAL, _GET_NEXT = _Variant(GetRequestNormal), _Variant(GetRequestNext)
_GET_LIST = _Variant(GetRequestWithList)
_GET_RESPONSE, _GET_BLOCK = _Variant(GetResponseNormal), _Variant(GetResponseWithDatablock)
_SET_NORMAL, _SET_RESPONSE = _Variant(SetRequestNormal), _Variant(SetResponseNormal)
_ACTION_NORMAL, _ACTION_RESPONSE = _Variant(ActionRequestNormal), _Variant(ActionResponseNormal)
_NOTIFICATION = _Variant(DataNotification)

#: Per byte value, each one-byte field written here as JSON text (`named_text`).
(_INVOKE_NAMES, _PRESENT_NAMES, _ITEM_PRESENT_NAMES, _PARAMS_PRESENT_NAMES, _RETURN_PRESENT_NAMES,
 _GDR_NAMES, _GDR_DAR_NAMES, _INNER_GDR_NAMES, _INNER_DAR_NAMES, _LAST_NAMES, _BLOCK_RESULT_NAMES,
 _BLOCK_DAR_NAMES, _SET_RESULT_NAMES, _ACTION_RESULT_NAMES, _DATE_TYPE_NAMES) = (
    named_texts(cls, name) for cls, name in (
        (GetRequestNormal, "invoke_id_and_priority"),
        (GetRequestNormal, "access_selection_present"),
        (CosemAttributeDescriptorWithSelection, "access_selection_present"),
        (ActionRequestNormal, "method_invocation_parameters_present"),
        (ActionResponseNormal, "return_parameters_present"), (GetResponseNormal, "result"),
        (GetResponseNormal, "data_access_result"), (GetDataResult, "result"),
        (GetDataResult, "data_access_result"), (GetResponseWithDatablock, "last_block"),
        (GetResponseWithDatablock, "result"), (GetResponseWithDatablock, "data_access_result"),
        (SetResponseNormal, "result"), (ActionResponseNormal, "result"),
        (DataNotification, "date_time_type")))
#: the values an xDLMS ENUMERATED may take without a finding (ProtocolEnumField's table)
_DAR = frozenset(field_of(GetResponseNormal, "data_access_result").i2s)
_SET_DAR = frozenset(field_of(SetResponseNormal, "result").i2s)
_ACTION_RESULTS = frozenset(field_of(ActionResponseNormal, "result").i2s)

_ATTRIBUTE_LAYER = json_string(layer_name(CosemAttributeDescriptor))
_METHOD_LAYER = json_string(layer_name(CosemMethodDescriptor))
_SELECTION_LAYER = json_string(layer_name(SelectiveAccessDescriptor))
_ITEM_LAYER = json_string(layer_name(CosemAttributeDescriptorWithSelection))
_GDR_LAYER = json_string(layer_name(GetDataResult))
_CLASS_FIELD = field_of(CosemAttributeDescriptor, "class_id")

#: Fields written as plain numbers here: the fast path is off (every APDU goes to the Packet
#: path) if a layer ever shows one of them by name.
_PLAIN = [(CosemAttributeDescriptor, "attribute_id"), (CosemMethodDescriptor, "method_id"),
          (SelectiveAccessDescriptor, "access_selector"), (GetRequestNext, "block_number"),
          (GetResponseWithDatablock, "block_number"),
          (GetRequestWithList, "attribute_descriptor_list_count"),
          (GetResponseWithDatablock, "raw_data_length"), (DataNotification, "date_time_length")]
_LONG_INVOKE = field_of(DataNotification, "long_invoke_id_and_priority")
_VARIANTS = (_GET_NORMAL, _GET_NEXT, _GET_LIST, _GET_RESPONSE, _GET_BLOCK, _SET_NORMAL,
             _SET_RESPONSE, _ACTION_NORMAL, _ACTION_RESPONSE)
ENABLED = DATA_ENABLED and all(v.tag_name and v.choice_name for v in _VARIANTS) and \
    bool(_NOTIFICATION.tag_name) and not any(shows_names(field_of(c, n)) for c, n in _PLAIN) and \
    field_of(CosemMethodDescriptor, "class_id").i2s == _CLASS_FIELD.i2s and \
    all(shown_name(_LONG_INVOKE, v) is None for v in (0, 0x80000001, 0xFFFFFFFF))


#: Descriptors read so far: (9 bytes, member word) -> its JSON text, summary words, class-id
#: and attribute/method-id (a few hundred in real traffic; bounded).
_DESCRIPTORS: dict[tuple[bytes, str], tuple[str, str, int, int]] = {}
_MAX_DESCRIPTORS = 4096


def _descriptor(buf: bytes, pos: int, layer: str, member: str,
                word: str) -> tuple[str, str, int, int]:
    """A Cosem-Attribute/Method-Descriptor (9 bytes): its JSON text (`layer` as JSON text),
    its summary words, class-id and attribute/method-id."""
    key = (buf[pos:pos + 9], word)
    known = _DESCRIPTORS.get(key)
    if known is None:
        if len(key[0]) != 9:
            raise Unsure("descriptor")
        raw = key[0]
        cid = (raw[0] << 8) | raw[1]
        ident = raw[8] - 256 if raw[8] > 127 else raw[8]
        instance = raw[2:8]
        text = (f"{obis_str(instance)} {word} {ident} "
                f"({INTERFACE_CLASSES.get(cid, f'class {cid}')})")
        if len(_DESCRIPTORS) >= _MAX_DESCRIPTORS:
            _DESCRIPTORS.clear()
        known = _DESCRIPTORS[key] = (
            f'{{"layer": {layer}, "class_id": {named_text(cid, shown_name(_CLASS_FIELD, cid))}, '
            f'"instance_id": "{instance.hex().upper()}", "{member}": {ident}}}', text, cid, ident)
    return known


def _selection(buf: bytes, pos: int, state: list[Any],
               depth: int = 1) -> tuple[str, int, int]:
    """A Selective-Access-Descriptor (at `depth` of the JSON tree): its JSON text, its
    access-selector and where it ends."""
    selector = buf[pos]
    state[0] = 0
    params, pos = read_data(buf, pos + 1, depth + 1, state)
    return (f'{{"layer": {_SELECTION_LAYER}, "access_selector": {selector}, '
            f'"access_parameters": {params}}}', selector, pos)


def _end(buf: bytes, pos: int) -> None:
    """Bytes left after the APDU are the Packet path's (`apdu.trailing-bytes`)."""
    if pos != len(buf):
        raise Unsure("trailing bytes")


def _access_result(buf: bytes, pos: int, names: tuple[str, ...]) -> tuple[str, str]:
    """A Data-Access-Result at `pos`, the APDU's last byte: its JSON text and its summary
    words (a value outside the enumeration is the Packet path's)."""
    dar = buf[pos]
    if dar not in _DAR:
        raise Unsure("data-access-result")
    _end(buf, pos + 1)
    return names[dar], f"data-access-result {DATA_ACCESS_RESULT.get(dar, dar)}"


def _request_head(buf: bytes, variant: _Variant,
                  method: bool = False) -> tuple[str, str, int, int, int]:
    """The head of a normal get/set/action request: tag, choice, invoke-id, the descriptor and
    the usage flag after it (access-selection, or method-invocation-parameters), as the JSON
    text of an object not closed yet; with the descriptor's summary words, class-id and
    attribute/method-id, and the flag."""
    flag = buf[12]
    if method:
        desc, text, cid, ident = _descriptor(buf, 3, _METHOD_LAYER, "method_id", "method")
        fields = (f'{variant.head(buf[2])}, "cosem_method_descriptor": {desc}, '
                  f'"method_invocation_parameters_present": {_PARAMS_PRESENT_NAMES[flag]}')
    else:
        desc, text, cid, ident = _descriptor(buf, 3, _ATTRIBUTE_LAYER, "attribute_id", "attr")
        fields = (f'{variant.head(buf[2])}, "cosem_attribute_descriptor": {desc}, '
                  f'"access_selection_present": {_PRESENT_NAMES[flag]}')
    return fields, text, cid, ident, flag


def _response_head(buf: bytes, variant: _Variant, allowed: frozenset[int],
                   names: tuple[str, ...]) -> tuple[str, int]:
    """The head of a normal set/action response: tag, choice, invoke-id and its result (an
    xDLMS ENUMERATED: a value outside `allowed` is the Packet path's), as the JSON text of an
    object not closed yet; with the result."""
    if buf[1] != 1:
        raise Unsure(f"{variant.layer} variant")
    result = buf[3]
    if result not in allowed:
        raise Unsure("result")
    return f'{variant.head(buf[2])}, "result": {names[result]}', result


# --------------------------------------------------------------------------- the APDUs

def _get_request(buf: bytes) -> FastApdu:
    """get-request: normal, next, with-list."""
    choice = buf[1]
    inv = buf[2]
    if choice == 2:
        block = _U32(buf, 3)[0]
        _end(buf, 7)
        return _apdu(_GET_NEXT.layer, f'{_GET_NEXT.head(inv)}, "block_number": {block}}}',
                     f"get-request next block {block}", inv & 0x0F, None, None, None)
    if choice == 3:
        return _get_request_with_list(buf, inv)
    if choice != 1:
        raise Unsure("get-request variant")
    fields, text, _, _, flag = _request_head(buf, _GET_NORMAL)
    summary = f"get-request normal {text}"
    state: list[Any] = [0, None]
    pos = 13
    if flag:
        selection, selector, pos = _selection(buf, 13, state)
        fields += f', "access_selection": {selection}'
        summary += f" selector {selector}"
    _end(buf, pos)
    return _apdu(_GET_NORMAL.layer, fields + "}", summary, inv & 0x0F, None, None, state[1])


def _get_request_with_list(buf: bytes, inv: int) -> FastApdu:
    """get-request with-list: Cosem-Attribute-Descriptor-With-Selection elements."""
    count, pos = read_length(buf, 3)
    if count > MAX_LIST or count * 10 > len(buf) - pos:
        raise Unsure("descriptor count")
    state: list[Any] = [0, None]
    items = []
    texts = []
    for _ in range(count):
        desc, text, _, _ = _descriptor(buf, pos, _ATTRIBUTE_LAYER, "attribute_id", "attr")
        flag = buf[pos + 9]
        item = (f'{{"layer": {_ITEM_LAYER}, "cosem_attribute_descriptor": {desc}, '
                f'"access_selection_present": {_ITEM_PRESENT_NAMES[flag]}')
        pos += 10
        if flag:
            selection, _, pos = _selection(buf, pos, state, 2)
            item += f', "access_selection": {selection}'
        items.append(item + "}")
        texts.append(text)
    _end(buf, pos)
    fields = (f'{_GET_LIST.head(inv)}, "attribute_descriptor_list_count": {count}, '
              f'"attribute_descriptor_list": [{", ".join(items)}]}}')
    return _apdu(_GET_LIST.layer, fields, f"get-request with-list [{', '.join(texts)}]",
                 inv & 0x0F, None, None, state[1])


def _get_response(buf: bytes) -> FastApdu:
    """get-response: normal (data or data-access-result), with-datablock (raw-data or
    data-access-result)."""
    choice = buf[1]
    inv = buf[2]
    state: list[Any] = [0, None]
    if choice == 1:
        result = buf[3]
        fields = f'{_GET_RESPONSE.head(inv)}, "result": {_GDR_NAMES[result]}'
        if result == 0:
            data, pos = read_data(buf, 4, 1, state)
            _end(buf, pos)
            fields += f', "data": {data}}}'
            said = f"data {data_summary(buf, 4)}"
        elif result == 1:
            dar, said = _access_result(buf, 4, _GDR_DAR_NAMES)
            fields += f', "data_access_result": {dar}}}'
        else:
            raise Unsure("get-data-result choice")
        return _apdu(_GET_RESPONSE.layer, fields, f"get-response normal: {said}",
                     inv & 0x0F, None, result, state[1])
    if choice != 2:
        raise Unsure("get-response variant")
    last = buf[3]
    block = _U32(buf, 4)[0]
    result = buf[8]
    fields = (f'{_GET_BLOCK.head(inv)}, "last_block": {_LAST_NAMES[last]}, '
              f'"block_number": {block}, "result": {_BLOCK_RESULT_NAMES[result]}')
    said = f"block {block}{' (last)' if last else ''}"
    if result == 0:
        n, pos = read_length(buf, 9)
        _end(buf, pos + n)
        fields += f', "raw_data_length": {n}, "raw_data": "{buf[pos:].hex().upper()}"}}'
        said += f", {n} bytes"
    elif result == 1:
        dar, words = _access_result(buf, 9, _BLOCK_DAR_NAMES)
        fields += f', "data_access_result": {dar}}}'
        said += f": {words}"
    else:
        raise Unsure("datablock-g choice")
    return _apdu(_GET_BLOCK.layer, fields, f"get-response with-datablock {said}",
                 inv & 0x0F, None, result, None)


def _set_request(buf: bytes) -> FastApdu:
    """set-request normal, with or without selective access."""
    if buf[1] != 1:
        raise Unsure("set-request variant")
    fields, text, _, _, flag = _request_head(buf, _SET_NORMAL)
    state: list[Any] = [0, None]
    pos = 13
    if flag:
        selection, _, pos = _selection(buf, 13, state)
        fields += f', "access_selection": {selection}'
    state[0] = 0
    at = pos
    value, pos = read_data(buf, pos, 1, state)
    _end(buf, pos)
    return _apdu(_SET_NORMAL.layer, f'{fields}, "value": {value}}}',
                 f"set-request normal {text} = {data_summary(buf, at)}",
                 buf[2] & 0x0F, None, None, state[1])


def _set_response(buf: bytes) -> FastApdu:
    """set-response normal."""
    fields, result = _response_head(buf, _SET_RESPONSE, _SET_DAR, _SET_RESULT_NAMES)
    _end(buf, 4)
    return _apdu(_SET_RESPONSE.layer, fields + "}",
                 f"set-response normal: {DATA_ACCESS_RESULT.get(result, str(result))}",
                 buf[2] & 0x0F, None, result, None)


def _action_request(buf: bytes) -> FastApdu:
    """action-request normal, with or without parameters."""
    if buf[1] != 1:
        raise Unsure("action-request variant")
    fields, text, cid, method, flag = _request_head(buf, _ACTION_NORMAL, method=True)
    summary = f"action-request normal {text}"
    state: list[Any] = [0, None]
    pos = 13
    if flag:
        params, pos = read_data(buf, 13, 1, state)
        fields += f', "method_invocation_parameters": {params}'
        summary += f" ({data_summary(buf, 13)})"
    _end(buf, pos)
    return _apdu(_ACTION_NORMAL.layer, fields + "}", summary, buf[2] & 0x0F, (cid, method),
                 None, state[1])


def _action_response(buf: bytes) -> FastApdu:
    """action-response normal, with or without return parameters."""
    fields, result = _response_head(buf, _ACTION_RESPONSE, _ACTION_RESULTS, _ACTION_RESULT_NAMES)
    flag = buf[4]
    fields += f', "return_parameters_present": {_RETURN_PRESENT_NAMES[flag]}'
    summary = f"action-response normal: {ACTION_RESULT.get(result, str(result))}"
    state: list[Any] = [0, None]
    pos = 5
    if flag:
        choice = buf[5]
        params = f'{{"layer": {_GDR_LAYER}, "result": {_INNER_GDR_NAMES[choice]}'
        if choice == 0:
            data, pos = read_data(buf, 6, 2, state)
            params += f', "data": {data}}}'
            summary += f", return-parameters data {data_summary(buf, 6)}"
        elif choice == 1:
            dar, words = _access_result(buf, 6, _INNER_DAR_NAMES)
            params += f', "data_access_result": {dar}}}'
            pos = 7
            summary += f", return-parameters {words}"
        else:
            raise Unsure("get-data-result choice")
        fields += f', "return_parameters": {params}'
    _end(buf, pos)
    return _apdu(_ACTION_RESPONSE.layer, fields + "}", summary, buf[2] & 0x0F, None, result,
                 state[1])


def _data_notification(buf: bytes) -> FastApdu:
    """data-notification: date-time `00`, `0C` + 12 bytes (a Data tag `09` before it kept), or
    any other length; then the body."""
    long_inv = _U32(buf, 1)[0]
    pos = 5
    lead = None
    if len(buf) > 6 and buf[5] == 0x09 and buf[6] == 0x0C:
        lead = 0x09
        pos = 6
    n, pos = read_length(buf, pos)
    end = pos + n
    if end > len(buf):
        raise Unsure("date-time overruns")
    when = buf[pos:end]
    state: list[Any] = [0, None]
    body, pos = read_data(buf, end, 1, state)
    _end(buf, pos)
    fields = (f'{_NOTIFICATION.opening}, "long_invoke_id_and_priority": {long_inv}, '
              f'"date_time_type": '
              f'{"null" if lead is None else _DATE_TYPE_NAMES[lead]}, '
              f'"date_time_length": {n}, "date_time": "{when.hex().upper()}", '
              f'"notification_body": {body}}}')
    at = f" at {format_date_time(when)}" if when else ""
    ident = long_inv & 0xFFFFFF
    return _apdu(_NOTIFICATION.layer, fields,
                 f"data-notification id {ident}{at}: {data_summary(buf, end)}", ident, None,
                 None, state[1])


_DECODERS = {0xC0: _get_request, 0xC4: _get_response, 0xC1: _set_request, 0xC5: _set_response,
             0xC3: _action_request, 0xC7: _action_response, 0x0F: _data_notification}


def decode_apdu(data: bytes) -> FastApdu | None:
    """The fast decoding of a plain xDLMS APDU, or None when the Packet path must decide."""
    return read_or_none(_DECODERS.get(data[0]) if data and ENABLED else None, data)


__all__ = ["ENABLED", "FastApdu", "decode_apdu"]
