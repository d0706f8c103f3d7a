"""HDLC frame bytes (IEC 62056-46 frame format type 3) as pure functions: the one place that
reads them.

The Scapy layer (`layers.hdlc`), the stream splitters, the serial demultiplexer and the live
record cutter all ask here: where a frame ends, whether its check sequences hold, what its
addresses and control byte are, and which way it travels. No state, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .crc import crc16

FLAG = 0x7E
FORMAT_TYPE = 0xA
MIN_LEN = 7  # format(2) + dest(1) + src(1) + control(1) + FCS(2)
MAX_LEN = 0x7FF  # the 11-bit length field
LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
CLIENT_TO_SERVER = "client->server"
SERVER_TO_CLIENT = "server->client"

# Unnumbered and supervisory frames: control byte with the P/F bit (0x10) cleared -> name.
_U_S_FRAMES = {0x01: "RR", 0x05: "RNR", 0x83: "SNRM", 0x43: "DISC", 0x63: "UA", 0x0F: "DM",
               0x87: "FRMR", 0x03: "UI"}
_COMMANDS = frozenset({"SNRM", "DISC"})
_RESPONSES = frozenset({"UA", "DM", "FRMR"})


def control_kind(control: int) -> str:
    """Frame kind named by a control byte: I, RR, RNR, SNRM, DISC, UA, DM, FRMR, UI or unknown."""
    if not control & 0x01:
        return "I"
    if control & 0x03 == 0x01:
        return _U_S_FRAMES.get(control & 0x0F, "unknown")
    return _U_S_FRAMES.get(control & 0xEF, "unknown")


def describe_control(control: int) -> str:
    """Control byte in words, e.g. `I N(S)=1 N(R)=2 P/F=1` or `RR N(R)=3 P/F=1`."""
    kind = control_kind(control)
    pf = (control >> 4) & 1
    if kind == "I":
        return f"I N(S)={(control >> 1) & 7} N(R)={control >> 5} P/F={pf}"
    if kind in ("RR", "RNR"):
        return f"{kind} N(R)={control >> 5} P/F={pf}"
    return f"{kind} P/F={pf}"


def encode_address(upper: int, lower: int | None = None, size: int | None = None) -> bytes:
    """Address bytes: client SAP / upper address alone (1 byte) or upper+lower (2 or 4 bytes)."""
    if lower is None and size in (None, 1):
        return bytes([(upper & 0x7F) << 1 | 1])
    lower = lower or 0
    if size is None:
        size = 2 if upper < 0x80 and lower < 0x80 else 4
    if size == 2:
        return bytes([(upper & 0x7F) << 1, (lower & 0x7F) << 1 | 1])
    return bytes([(upper >> 7 & 0x7F) << 1, (upper & 0x7F) << 1,
                  (lower >> 7 & 0x7F) << 1, (lower & 0x7F) << 1 | 1])


def decode_address(raw: bytes) -> tuple[int, int | None]:
    """(upper, lower) of an address field; lower is None for a 1-byte address."""
    vals = [b >> 1 for b in raw]
    if len(raw) == 1:
        return vals[0], None
    if len(raw) == 2:
        return vals[0], vals[1]
    if len(raw) == 4:
        return vals[0] << 7 | vals[1], vals[2] << 7 | vals[3]
    return int.from_bytes(bytes(vals), "big"), None


def describe_address(raw: bytes) -> str:
    """Address in words: `1` for a 1-byte address, `1/17` (logical/physical) otherwise."""
    if not raw:
        return "(none)"
    upper, lower = decode_address(raw)
    text = str(upper) if lower is None else f"{upper}/{lower}"
    return text if len(raw) in (1, 2, 4) else f"{text} (invalid {len(raw)}-byte address)"


def address_length(buf: bytes | bytearray, pos: int, n: int, end: int | None = None,
                   strict: bool = True) -> int | None:
    """Length of the address starting at `buf[pos]`: the byte with the extension bit (bit 0)
    ends it. 1, 2 or 4; 0 when its bytes are not all in `buf[:n]` yet; None when malformed
    (3 bytes unless not `strict`, no end within 4 bytes, or reaching `end`)."""
    for i in range(4):
        if end is not None and pos + i >= end:
            return None
        if pos + i >= n:
            return 0
        if buf[pos + i] & 1:
            return None if i == 2 and strict else i + 1
    return None


def frame_length(buf: bytes | bytearray, p: int = 0) -> int:
    """The 11-bit length of the frame whose opening flag is `buf[p]` (format through FCS)."""
    return (buf[p + 1] & 0x07) << 8 | buf[p + 2]


@dataclass(frozen=True, slots=True)
class FrameCheck:
    """What the bytes at a candidate opening flag hold.

    `state`: "frame" (complete, closing flag in place), "wait" (more bytes needed), "noflag" (no
    flag where the length says the frame ends) or "bad". `hcs_ok` is None while unknown (no
    information field, or not all header bytes yet); `fcs_ok` is known only for a "frame".
    """

    state: Literal["frame", "wait", "noflag", "bad"]
    length: int = 0
    hcs_ok: bool | None = None
    fcs_ok: bool = False

    @property
    def checks(self) -> bool:
        """Whether a check sequence holds (the frame is not line noise)."""
        return bool(self.fcs_ok or self.hcs_ok)


def check_frame(buf: bytes | bytearray, p: int = 0, n: int | None = None) -> FrameCheck:
    """Examine a candidate frame at `buf[p] == 7E` within `buf[:n]` (format type, length,
    addresses, HCS, closing flag, FCS)."""
    n = len(buf) if n is None else n
    if p + 3 > n:
        return FrameCheck("wait")
    length = frame_length(buf, p)
    if buf[p + 1] >> 4 != FORMAT_TYPE or length < MIN_LEN:
        return FrameCheck("bad", length)
    frame_end = p + 1 + length - 2  # addresses end before the FCS
    dest = address_length(buf, p + 3, n, frame_end)
    if dest is None:
        return FrameCheck("bad", length)
    src = address_length(buf, p + 3 + dest, n, frame_end) if dest else 0
    if src is None:
        return FrameCheck("bad", length)
    hcs_ok: bool | None = None
    if dest and src:
        header = 2 + dest + src + 1
        if length < header + 2 or length == header + 3:
            return FrameCheck("bad", length)
        if length > header + 2 and p + 1 + header + 2 <= n:
            hcs = buf[p + 1 + header] | buf[p + 2 + header] << 8
            hcs_ok = crc16(buf[p + 1 : p + 1 + header]) == hcs
    if p + length + 2 > n:
        return FrameCheck("wait", length, hcs_ok)
    if buf[p + 1 + length] != FLAG:
        return FrameCheck("noflag", length, hcs_ok)
    fcs = buf[p + length - 1] | buf[p + length] << 8
    return FrameCheck("frame", length, hcs_ok, crc16(buf[p + 1 : p + length - 1]) == fcs)


def flag_with_fcs(buf: bytes | bytearray, p: int, n: int) -> int | None:
    """Position of the first flag after `p` that ends a frame with a valid FCS (for a frame
    whose length field is wrong), or None."""
    q = buf.find(FLAG, p + MIN_LEN + 1, min(n, p + 2 + MAX_LEN))
    while q >= 0:
        if crc16(buf[p + 1 : q - 2]) == buf[q - 2] | buf[q - 1] << 8:
            return q
        q = buf.find(FLAG, q + 1, min(n, p + 2 + MAX_LEN))
    return None


def fcs_ok(frame: bytes) -> bool:
    """Whether a frame, flag to flag, ends with a valid FCS."""
    return len(frame) > 5 and crc16(frame[1:-3]) == frame[-3] | frame[-2] << 8


@dataclass(frozen=True, slots=True)
class Header:
    """Addresses and control byte of a frame; `info` is the offset of its information field."""

    destination: bytes
    source: bytes
    control: int
    info: int

    @property
    def kind(self) -> str:
        return control_kind(self.control)


def parse_header(frame: bytes | bytearray) -> Header | None:
    """The header of a frame starting with its flag, or None when its addresses are malformed."""
    n = len(frame)
    dest = address_length(frame, 3, n)
    src = address_length(frame, 3 + dest, n) if dest else None
    if not dest or not src or 3 + dest + src >= n:
        return None
    p = 3 + dest + src
    return Header(bytes(frame[3 : 3 + dest]), bytes(frame[3 + dest : p]), frame[p], p + 3)


def sound_frame(frame: bytes) -> tuple[FrameCheck, Header] | None:
    """The check and header of a frame (flag to flag) whose flags, format type, length and FCS
    are as they should be, else None (its HCS, where it has one, is the caller's to judge)."""
    if len(frame) < MIN_LEN + 2 or frame[0] != FLAG or frame[-1] != FLAG:
        return None
    check = check_frame(frame)
    if check.state != "frame" or check.length + 2 != len(frame) or not check.fcs_ok:
        return None
    head = parse_header(frame)
    return (check, head) if head is not None else None


def clean_frame(frame: bytes) -> Header | None:
    """The header of a frame with an information field that the HDLC layer dissects without
    a finding (flags, format type, length, HCS and FCS as they should be), else None."""
    sound = sound_frame(frame)
    return sound[1] if sound is not None and sound[0].hcs_ok is True else None


def header_direction(header: Header, frame: bytes | bytearray) -> str | None:
    """Which way a frame travels by what it says of itself: SNRM and DISC are commands
    (client->server), UA, DM and FRMR responses; the first segment of an I or UI frame has the
    LLC E6E6 (command) or E6E7 (response). None when the frame does not say (RR, later
    segments): then, in the project's one direction rule (`dissector.analysis.directions`),
    what the address pair did before decides, and only then `address_direction`."""
    kind = header.kind
    if kind in _COMMANDS:
        return CLIENT_TO_SERVER
    if kind in _RESPONSES:
        return SERVER_TO_CLIENT
    if kind in ("I", "UI"):
        llc = bytes(frame[header.info : header.info + 2])  # LSAPs; the quality byte aside
        if llc == LLC_RESPONSE[:2]:
            return SERVER_TO_CLIENT
        if llc == LLC_REQUEST[:2]:
            return CLIENT_TO_SERVER
    return None


def address_direction(header: Header) -> str | None:
    """The guess the address sizes allow: a 1-byte address facing a longer one is the
    client's (server addresses may be longer, client addresses never are)."""
    dest, src = header.destination, header.source
    if len(src) == 1 and len(dest) > 1:
        return CLIENT_TO_SERVER
    if len(dest) == 1 and len(src) > 1:
        return SERVER_TO_CLIENT
    return None
