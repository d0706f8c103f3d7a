"""HDLC frames without an APDU (SNRM, UA, DISC, DM, RR, ...) read without Scapy Packets: what
a record needs of `HDLC(frame)` (its name, the `packet_fields` JSON as text, `mysummary()`).

`decode_frame(data)` covers a frame the HDLC layer dissects without a finding: flags, format
type, length, HCS and FCS as they should be, and no information field or the SNRM/UA
parameter negotiation (format 81, group 80) filling it exactly. Anything else gives None: the
Packet path decides. tests/test_fast_hdlc.py holds the two equal.
"""

from __future__ import annotations

from types import SimpleNamespace

from .fast_axdr import Unsure, json_string, layer_name, named_texts, read_length, read_or_none
from .fastapdu import FastApdu
from .hdlc import HDLC, HDLCParameter, HDLCParameters
from .hdlc_bytes import FLAG, control_kind, sound_frame

_PARAMETER_IDS = named_texts(HDLCParameter, "parameter_id")
_PARAMETER = json_string(layer_name(HDLCParameter))
_NEGOTIATION = json_string(layer_name(HDLCParameters))
_HEAD = f'{{"layer": {json_string(layer_name(HDLC))}, "flag": {FLAG}, "frame_format": 10, '
_TAIL = f', "closing_flag": {FLAG}}}'


def _parameters(info: bytes) -> str:
    """The SNRM/UA information field (81 80, group length, parameters) as JSON text."""
    size, pos = read_length(info, 2)
    end = pos + size
    if end != len(info):
        raise Unsure("group length")
    items = []
    while pos < end:
        ident = info[pos]
        n, pos = read_length(info, pos + 1)
        if not n or pos + n > end:
            raise Unsure("parameter length")
        items.append(f'{{"layer": {_PARAMETER}, "parameter_id": {_PARAMETER_IDS[ident]}, '
                     f'"parameter_length": {n}, "value": "{info[pos:pos + n].hex().upper()}"}}')
        pos += n
    return (f'{{"layer": {_NEGOTIATION}, "format_id": 129, "group_id": 128, '
            f'"group_length": {size}, "parameters": [{", ".join(items)}]}}')


def _frame(data: bytes) -> FastApdu:
    sound = sound_frame(data)
    if sound is None:
        raise Unsure("frame")
    check, head = sound
    dst, src, control = head.destination, head.source, head.control
    kind = control_kind(control)
    info = ""
    if check.length > 3 + len(dst) + len(src) + 2:  # an information field
        fields = data[head.info:-3]
        if check.hcs_ok is not True or kind not in ("SNRM", "UA") or fields[:2] != b"\x81\x80":
            raise Unsure("information field")
        info = (f', "hcs": {data[head.info - 2] | data[head.info - 1] << 8}, '
                f'"information": {_parameters(fields)}')
    elif kind == "I":
        raise Unsure("I frame without information")  # hdlc.empty-i-frame
    segmentation = data[1] >> 3 & 1
    text = (f'{_HEAD}"segmentation": {segmentation}, "length": {check.length}, '
            f'"destination": "{dst.hex().upper()}", "source": "{src.hex().upper()}", '
            f'"control": {control}{info}, "fcs": {data[-3] | data[-2] << 8}{_TAIL}')
    shown = SimpleNamespace(segmentation=segmentation, source=src, destination=dst,
                            control=control)
    summary = HDLC.mysummary(shown)  # type: ignore[arg-type]
    return FastApdu(f"hdlc-{kind.lower()}", text, summary, None, None, None, None)


def decode_frame(data: bytes) -> FastApdu | None:
    """The fast reading of an HDLC frame (flag to flag) that carries no APDU, or None when the
    Packet path must decide."""
    return read_or_none(_frame, data)


__all__ = ["decode_frame"]
