"""Wired M-Bus link layer (EN 13757-2, FT1.2 framing) and the DLMS transport it carries.

Frames:

- single character ``E5``: acknowledgement;
- short frame ``10 C A CS 16``;
- long frame ``68 L L 68 C A CI data CS 16``: L counts C, A, CI and the data (3..255); CS is the
  sum of the bytes from C to the end of the data, modulo 256.

The C field: bit 6 PRM (1: sent by the master), bit 5 FCB (master) / ACD (slave), bit 4 FCV
(master) / DFC (slave), bits 3-0 the function (SND_NKE, SND_UD, REQ_UD1, REQ_UD2, RSP_UD, ACK).

DLMS over M-Bus (EN 13757-1 reserves CI 00..1F for DLMS): bit 4 of the CI marks the last
segment, bits 3-0 number the segments (modulo 16); STSAP and DTSAP follow the CI, then a part
of the APDU. A frame with CI ``10`` (segment 0, last) carries a whole APDU, which is dissected
in place; `mbus_segment` gives the reassembler what it needs from any frame.

Some meters send a long frame longer than 255 bytes with the L field overflowed (the corpus has
``68 01 01 68`` in front of 257 bytes): when the frame does not end where L says but a stop byte
with a valid checksum sits 256 bytes further, that length is used (finding `mbus.bad-length`),
and the L fields keep their wire value so that the frame rebuilds byte for byte.

`MBus(b)` dispatches on the first byte to `MBusAck`, `MBusShortFrame` or `MBusLongFrame`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scapy.fields import ByteField, ConditionalField, PacketLenField, XByteField
from scapy.packet import Packet, Raw

from .apdu.base import APDU
from .expert import add_finding
from .packet import DLMSPacket

ACK = 0xE5
SHORT_START = 0x10
LONG_START = 0x68
STOP = 0x16
MAX_L = 255
#: CI values EN 13757-1 reserves for DLMS: bit 4 last segment, bits 3-0 sequence number.
DLMS_CI_MAX = 0x1F
DLMS_CI_LAST = 0x10

#: Function codes (C bits 3-0) of frames sent by the master (PRM = 1) and by a slave.
MASTER_FUNCTIONS = {0x0: "SND_NKE", 0x3: "SND_UD", 0xA: "REQ_UD1", 0xB: "REQ_UD2"}
SLAVE_FUNCTIONS = {0x0: "ACK", 0x8: "RSP_UD"}

#: Well-known CI values outside the DLMS range (EN 13757-3).
CI_NAMES = {
    0x50: "application reset", 0x51: "data send", 0x52: "selection of slaves",
    0x54: "synchronize action", 0x70: "application error", 0x71: "alarm",
    0x72: "variable data response (long header)", 0x78: "variable data response (no header)",
    0x7A: "variable data response (short header)",
    **{0xB8 + i: f"set baud rate {rate}"
       for i, rate in enumerate((300, 600, 1200, 2400, 4800, 9600, 19200, 38400))},
}


def checksum(body: bytes) -> int:
    """The M-Bus check sum: arithmetic sum of the bytes, modulo 256."""
    return sum(body) & 0xFF


def describe_control(c: int) -> str:
    """C field in words, e.g. `SND_UD FCB=1 FCV=1` or `RSP_UD ACD=0 DFC=0`."""
    fn = c & 0x0F
    if c & 0x40:
        name = MASTER_FUNCTIONS.get(fn, f"function {fn}")
        return f"{name} FCB={c >> 5 & 1} FCV={c >> 4 & 1}"
    name = SLAVE_FUNCTIONS.get(fn, f"function {fn}")
    return f"{name} ACD={c >> 5 & 1} DFC={c >> 4 & 1}"


def describe_address(a: int) -> str:
    """A field in words: primary address, secondary addressing or broadcast."""
    if a == 0:
        return "unconfigured"
    if a <= 250:
        return f"primary {a}"
    return {253: "secondary addressing", 254: "broadcast (all reply)",
            255: "broadcast (no reply)"}.get(a, "reserved")


def describe_ci(ci: int) -> str:
    """CI field in words; DLMS values give the segment number and whether it is the last."""
    if ci <= DLMS_CI_MAX:
        last = ", last" if ci & DLMS_CI_LAST else ""
        return f"DLMS segment {ci & 0x0F}{last}"
    return CI_NAMES.get(ci, "other")


class MBusControlField(XByteField):
    """The C field, shown in words."""

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        return "None" if x is None else f"0x{x:02x} ({describe_control(x)})"


class MBusAddressField(ByteField):
    """The A field, shown in words."""

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        return "None" if x is None else f"{x} ({describe_address(x)})"


class MBusCIField(XByteField):
    """The CI field, shown in words."""

    def i2repr(self, pkt: Packet | None, x: int | None) -> str:
        return "None" if x is None else f"0x{x:02x} ({describe_ci(x)})"


class MBusSegment(Raw):
    """Part of an APDU split across M-Bus frames; the reassembler joins the segments."""

    name = "M-Bus DLMS segment"


class MBusUserData(Raw):
    """User data of a frame whose CI is not a DLMS one (EN 13757-3 application data)."""

    name = "M-Bus user data"


def _is_dlms(pkt: Packet) -> bool:
    ci = pkt.ci
    return ci is not None and ci <= DLMS_CI_MAX


def _body_len(pkt: Packet) -> int:
    """Bytes from C to the end of the data: as found on dissection, else the L field."""
    found = pkt.__dict__.get("body_len")
    if found is not None:
        return int(found)
    return pkt.length if pkt.length is not None else MAX_L


def _has_tsaps(pkt: Packet) -> bool:
    return _is_dlms(pkt) and _body_len(pkt) >= 5


def _data_len(pkt: Packet) -> int:
    return max(0, _body_len(pkt) - (5 if _has_tsaps(pkt) else 3))


class MBusDataField(PacketLenField):
    """The data after CI (and the TSAPs): a whole APDU, an APDU segment or other user data."""

    def m2i(self, pkt: Packet, m: bytes) -> Packet:
        if not _is_dlms(pkt):
            return MBusUserData(m)
        if pkt.ci == DLMS_CI_LAST:
            return APDU(m, _parent=pkt)
        return MBusSegment(m)


def _closes(s: bytes | bytearray, pos: int, body: int, strict: bool = True) -> bool:
    """Whether a long frame at `pos` with `body` bytes from C on ends there: stop byte in
    place and (when `strict`) a matching check sum. The bytes must be present."""
    end = pos + 4 + body
    return s[end + 1] == STOP and (not strict or checksum(s[pos + 4 : end]) == s[end])


def _frame_body_len(s: bytes | bytearray, pos: int = 0) -> tuple[int, bool]:
    """(bytes from C to the end of the data, L overflowed) of a long frame at `s[pos]`."""
    n = len(s) - pos
    declared = s[pos + 1] if n > 1 else 0
    body = declared
    while 6 + body <= n:
        if _closes(s, pos, body):
            return body, body != declared
        body += 256
    return declared, False


class _MBusFrame(DLMSPacket):
    """Shared checks of short and long frames (start and stop bytes, check sum)."""

    #: Offset of the C field and bytes before the check sum that follow the body.
    body_start = 0

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s

    def _check_sum_and_stop(self, wire: bytes, body_len: int) -> None:
        self.__dict__["cs_ok"] = None
        end = self.body_start + body_len
        if len(wire) < end + 2:
            add_finding(self, "error", "mbus.truncated",
                        f"frame needs {end + 2} bytes, {len(wire)} present")
            return
        want = checksum(wire[self.body_start : end])
        ok = wire[end] == want
        self.__dict__["cs_ok"] = ok
        if not ok:
            add_finding(self, "error", "mbus.bad-checksum",
                        f"check sum {wire[end]:02x} wrong, computed {want:02x}")
        if wire[end + 1] != STOP:
            add_finding(self, "error", "mbus.bad-stop",
                        f"stop byte {wire[end + 1]:02x}, expected 16")

    @property
    def checksum_ok(self) -> bool | None:
        """Whether the check sum matched (None: not dissected, or truncated)."""
        return self.__dict__.get("cs_ok")


class MBusAck(DLMSPacket):
    """The single character acknowledgement E5."""

    name = "M-Bus ACK"
    fields_desc = [XByteField("ack", ACK)]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s

    def mysummary(self) -> str:
        return "M-Bus ACK (E5)"


class MBusShortFrame(_MBusFrame):
    """Short frame 10 C A CS 16 (SND_NKE, REQ_UD1/2, ...). The check sum is computed on build."""

    name = "M-Bus short frame"
    body_start = 1
    fields_desc = [
        XByteField("start", SHORT_START),
        MBusControlField("control", 0x5B),
        MBusAddressField("address", 0xFE),
        XByteField("checksum", None),
        XByteField("stop", STOP),
    ]

    def pre_dissect(self, s: bytes) -> bytes:
        self.__dict__["wire"] = s
        return s

    def post_dissect(self, s: bytes) -> bytes:
        self._check_sum_and_stop(self.__dict__.pop("wire", b""), 2)
        return s

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        if self.checksum is None and len(p) >= 5:
            p = p[:3] + bytes([checksum(p[1:3])]) + p[4:]
        return p + pay

    def mysummary(self) -> str:
        return f"M-Bus short {describe_control(self.control)} A={self.address}"


class MBusLongFrame(_MBusFrame):
    """Long frame 68 L L 68 C A CI [STSAP DTSAP] data CS 16.

    L (both copies) and CS are computed on build when left None. STSAP and DTSAP are present
    when the CI is a DLMS one (00..1F).
    """

    name = "M-Bus long frame"
    body_start = 4
    fields_desc = [
        XByteField("start", LONG_START),
        ByteField("length", None),
        ByteField("length2", None),
        XByteField("start2", LONG_START),
        MBusControlField("control", 0x53),
        MBusAddressField("address", 0xFF),
        MBusCIField("ci", DLMS_CI_LAST),
        ConditionalField(XByteField("stsap", 0x01), _has_tsaps),
        ConditionalField(XByteField("dtsap", 0x01), _has_tsaps),
        MBusDataField("data", None, Raw, length_from=_data_len),
        XByteField("checksum", None),
        XByteField("stop", STOP),
    ]

    def pre_dissect(self, s: bytes) -> bytes:
        self.__dict__["wire"] = s
        body, overflow = _frame_body_len(s)
        self.__dict__["body_len"] = body
        self.__dict__["l_overflow"] = overflow
        return s

    def post_dissect(self, s: bytes) -> bytes:
        wire = self.__dict__.pop("wire", b"")
        body = _body_len(self)
        fields = self.fields
        if fields.get("start2", LONG_START) != LONG_START:
            add_finding(self, "error", "mbus.bad-start",
                        f"second start byte {fields['start2']:02x}, expected 68")
        if "length2" in fields and fields["length"] != fields["length2"]:
            add_finding(self, "error", "mbus.length-mismatch",
                        f"L fields differ: {fields['length']} and {fields['length2']}")
        if self.__dict__.get("l_overflow"):
            add_finding(self, "warning", "mbus.bad-length",
                        f"L field says {fields.get('length')}, but the stop byte and a valid"
                        f" check sum follow {body} bytes (L overflowed: a long frame holds"
                        f" at most {MAX_L})")
        elif body < 3 and len(wire) > 1:
            add_finding(self, "error", "mbus.bad-length",
                        f"L field {body} is below 3 (C, A and CI)")
        if fields.get("ci") is not None and fields["ci"] <= DLMS_CI_MAX and body in (3, 4):
            add_finding(self, "warning", "mbus.no-tsap",
                        "DLMS CI without room for STSAP and DTSAP")
        self._check_sum_and_stop(wire, body)
        return s

    def post_build(self, p: bytes, pay: bytes) -> bytes:
        buf = bytearray(p)
        if len(buf) >= 6:
            if self.length is None:
                buf[1] = (len(buf) - 6) & 0xFF
            if self.length2 is None:
                buf[2] = buf[1]
            if self.checksum is None:
                buf[-2] = checksum(bytes(buf[4:-2]))
        return bytes(buf) + pay

    @property
    def is_dlms(self) -> bool:
        """Whether the CI marks a DLMS transport frame (00..1F)."""
        return _is_dlms(self)

    @property
    def sequence(self) -> int | None:
        """DLMS segment number (CI bits 3-0), None for other CIs."""
        return self.ci & 0x0F if _is_dlms(self) else None

    @property
    def last_segment(self) -> bool | None:
        """Whether this is the last DLMS segment (CI bit 4), None for other CIs."""
        return bool(self.ci & DLMS_CI_LAST) if _is_dlms(self) else None

    @property
    def data_bytes(self) -> bytes:
        """The data after CI and the TSAPs, as received (or as built)."""
        data = self.fields.get("data")
        if data is None:
            return b""
        original = getattr(data, "original", None)
        return bytes(original) if original is not None else bytes(data)

    @property
    def apdu(self) -> Packet | None:
        """The APDU of a frame that carries a whole one (CI 10), else None."""
        data = self.fields.get("data")
        return data if self.ci == DLMS_CI_LAST and not isinstance(data, Raw) else None

    def mysummary(self) -> str:
        tsap = f" TSAP {self.stsap}->{self.dtsap}" if _has_tsaps(self) else ""
        return (f"M-Bus {describe_control(self.control)} A={self.address}"
                f" CI={self.ci:02x} ({describe_ci(self.ci)}){tsap}")


class MBusUnknown(DLMSPacket):
    """Bytes that do not start an M-Bus frame (not E5, 10 or 68): kept as they are."""

    name = "M-Bus (not a frame)"
    fields_desc = [XByteField("start", 0)]

    def post_dissect(self, s: bytes) -> bytes:
        add_finding(self, "error", "mbus.bad-start",
                    f"first byte {self.start:02x} starts no M-Bus frame (E5, 10 or 68)")
        return s


_START_CLASSES: dict[int, type[Packet]] = {ACK: MBusAck, SHORT_START: MBusShortFrame,
                                           LONG_START: MBusLongFrame}


class MBus(Packet):
    """Dispatcher: `MBus(b)` returns the frame class the first byte names."""

    name = "M-Bus"
    fields_desc = [XByteField("start", LONG_START)]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        if _pkt:
            return _START_CLASSES.get(_pkt[0], MBusUnknown)
        return MBusLongFrame


def frame_length(data: bytes | bytearray, pos: int = 0, strict: bool = True,
                 final: bool = False) -> int | None:
    """Length of the M-Bus frame starting at `data[pos]`; 0 if more bytes are needed; None if
    the bytes there make no frame.

    A frame must end with its stop byte and, when `strict`, a valid check sum (a splitter in
    sync passes `strict=False` so that the layer reports a bad check sum). A long frame with no
    stop byte where L says is tried 256 bytes further (L overflow, see `MBusLongFrame`), with
    a valid check sum required; `final` (end of the stream) stops waiting for those bytes.
    """
    n = len(data) - pos
    if n <= 0:
        return 0
    first = data[pos]
    if first == ACK:
        return 1
    if first == SHORT_START:
        if n < 5:
            return 0
        ok = data[pos + 4] == STOP and (
            not strict or checksum(data[pos + 1 : pos + 3]) == data[pos + 3])
        return 5 if ok else None
    if first != LONG_START:
        return None
    if n < 4:
        return 0
    declared = data[pos + 1]
    if data[pos + 3] != LONG_START or data[pos + 2] != declared:
        return None
    if declared >= 3:
        if n < declared + 6:
            return 0
        if _closes(data, pos, declared, strict):
            return declared + 6
        if data[pos + 5 + declared] == STOP:
            return None
    body = declared + 256
    if n < body + 6:
        return None if final else 0
    return body + 6 if _closes(data, pos, body) else None


@dataclass(frozen=True)
class DlmsSegment:
    """What a long frame with a DLMS CI contributes to an APDU."""

    address: int
    from_master: bool
    sequence: int
    last: bool
    stsap: int | None
    dtsap: int | None
    data: bytes

    @property
    def key(self) -> tuple[int, bool]:
        """Frames of one APDU share the A field and the direction (PRM bit)."""
        return self.address, self.from_master


def mbus_segment(frame: Packet) -> DlmsSegment | None:
    """The DLMS segment an M-Bus frame carries, or None (ACK, short frame, other CI; a
    dissected frame that is truncated or fails its check sum)."""
    if not isinstance(frame, MBusLongFrame) or not frame.is_dlms:
        return None
    fields = frame.fields
    if "body_len" in frame.__dict__ and ("stop" not in fields or not frame.checksum_ok):
        return None
    return DlmsSegment(
        address=int(frame.address), from_master=bool(frame.control & 0x40),
        sequence=int(frame.ci & 0x0F), last=bool(frame.ci & DLMS_CI_LAST),
        stsap=fields.get("stsap"), dtsap=fields.get("dtsap"), data=frame.data_bytes)


def build_long_frames(apdu: bytes, *, control: int = 0x53, address: int = 0xFF,
                      stsap: int = 0x01, dtsap: int = 0x01, max_data: int = 250
                      ) -> list[bytes]:
    """Split an APDU into DLMS M-Bus long frames (segments numbered from 0, the last with CI
    bit 4 set), `max_data` APDU bytes per frame at most (250 fills L = 255)."""
    if not 1 <= max_data <= MAX_L - 5:
        raise ValueError(f"max_data must be 1..{MAX_L - 5}")
    parts = [apdu[i : i + max_data] for i in range(0, len(apdu), max_data)] or [b""]
    out = []
    for seq, part in enumerate(parts):
        ci = (seq & 0x0F) | (DLMS_CI_LAST if seq == len(parts) - 1 else 0)
        frame = MBusLongFrame(control=control, address=address, ci=ci, stsap=stsap,
                              dtsap=dtsap, data=MBusSegment(part) if part else None)
        out.append(bytes(frame))
    return out


__all__ = ["ACK", "DLMS_CI_LAST", "DLMS_CI_MAX", "DlmsSegment", "MBus", "MBusAck",
           "MBusLongFrame", "MBusSegment", "MBusShortFrame", "MBusUnknown", "MBusUserData",
           "build_long_frames", "checksum", "describe_address", "describe_ci",
           "describe_control", "frame_length", "mbus_segment"]
