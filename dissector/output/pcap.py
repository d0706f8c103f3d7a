"""`-w OUT.pcapng`: the annotated export, one packet per APDU.

Each packet is Ethernet / IPv4 / UDP 4059 / IEC 62056-47 wrapper / the APDU, deciphered when
possible (an AARQ, AARE, RLRQ or RLRE whole, its user-information deciphered in place), so that
a Wireshark with a DLMS dissector of its own (UDP/TCP 4059) decodes the plaintext. Two packet
comments carry what dlms-dissector found: a line for people, then `dlmsd:` and the record as
`read --json` prints it (after the redaction step) plus `summary`, the summary line without
time, direction and link; the Lua plugin (`dissector/wireshark/dlmsd.lua`) shows that one.

The pcapng is written by hand (a few fixed headers per packet): building the packets with Scapy
cost as much as the dissection itself.
"""

from __future__ import annotations

import json
import struct
from typing import Any, BinaryIO

from dissector.analysis.record import ApduRecord
from dissector.output.jsonout import record_json
from dissector.output.text import summary_line
from layers.apdu.acse import ACSEAPDU
from layers.apdu.acse_components import UserInformation
from layers.fields import field_value
from layers.wrapper import DLMS_PORT

CLIENT_IP, SERVER_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
# Locally administered MAC addresses: the file is the same on every machine.
CLIENT_MAC, SERVER_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
CLIENT_PORT = 40000
#: Wrapper ports: the public client (16) and the management logical device (1).
CLIENT_WPORT, SERVER_WPORT = 16, 1
#: Marks the comment that holds the record's JSON (the Lua plugin looks for it).
JSON_MARK = "dlmsd:"
LINKTYPE_ETHERNET = 1
APPLICATION = b"dlms-dissector"

#: (packet bytes from the Ethernet header on; time; comments).
PcapItem = tuple[bytes, float, tuple[str, ...]]


def _bytes_as_hex(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex().upper()
    return str(obj)


#: `read --json`'s values, without the spaces (the comment is a tenth smaller, and quicker).
COMPACT = json.JSONEncoder(default=_bytes_as_hex, check_circular=False, separators=(",", ":"))


def _ber_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def acse_deciphered(pkt: ACSEAPDU, envelope: object, plain: bytes) -> bytes:
    """The ACSE APDU's bytes with the ciphered APDU in its user-information replaced by `plain`
    (every other component as it came, the BER lengths recomputed)."""
    parts = [_user_information(plain) if isinstance(comp, UserInformation)
             and comp.apdu is envelope else bytes(comp)
             for comp in field_value(pkt, "components") or ()]
    return _acse_bytes(bytes(pkt)[:1], b"".join(parts))


def _user_information(plain: bytes) -> bytes:
    inner = b"\x04" + _ber_length(len(plain)) + plain
    return b"\xbe" + _ber_length(len(inner)) + inner


def _acse_bytes(tag: bytes, body: bytes) -> bytes:
    return tag + _ber_length(len(body)) + body


def apdu_bytes(rec: ApduRecord) -> bytes:
    """What the export carries of a record: the APDU, deciphered where possible."""
    plain = rec.plaintext()
    fast = rec.fast
    if plain is None:
        return fast.data if fast is not None else bytes(rec.packet)
    if fast is not None:  # the ACSE APDU's components as they came, the user-information
        acse = fast.acse  # deciphered (`acse_deciphered`, without the Packets)
        if acse is None or acse.user_information_span is None:
            return plain
        data, (start, stop) = fast.data, acse.user_information_span
        return _acse_bytes(data[:1], data[acse.components_at:start] + _user_information(plain)
                           + data[stop:])
    if isinstance(rec.packet, ACSEAPDU):
        return acse_deciphered(rec.packet, rec.tree_envelope, plain)
    return plain


def info_text(rec: ApduRecord, line: str | None = None) -> str:
    """The summary line (`line`, when already made) without time, direction, link and frames
    (Wireshark's Info column)."""
    frames = ",".join(str(f) for f in rec.frames) or "-"
    head = f"{rec.time:17.6f} {rec.direction:15s} {rec.link}  [{frames}]  "
    line = line if line is not None else summary_line(rec)
    return line[len(head):] if line.startswith(head) else line


def _comment(rec: ApduRecord, plain: bool) -> str:
    words = [f"frames {','.join(map(str, rec.frames))}", f"link {rec.link}", rec.apdu]
    sec = rec.security()
    if sec is not None:
        verdict = {True: "tag OK", False: "tag FAILED", None: "tag not checked"}
        words.append(f"key={sec['key_kind']} {verdict[sec['tag_verified']]}")
        words.append("deciphered" if plain else "still ciphered")
    if any(f.code == "output.key-withheld" for f in rec.findings):
        words.append("dedicated key withheld (zeroed)")
    return "; ".join(words)


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame_bytes(apdu: bytes, direction: str) -> bytes:
    """Ethernet / IPv4 / UDP / wrapper / APDU, from the client or from the server."""
    to_server = direction != "server->client"
    src, dst = (CLIENT_IP, SERVER_IP) if to_server else (SERVER_IP, CLIENT_IP)
    hw_src, hw_dst = (CLIENT_MAC, SERVER_MAC) if to_server else (SERVER_MAC, CLIENT_MAC)
    sport, dport = (CLIENT_PORT, DLMS_PORT) if to_server else (DLMS_PORT, CLIENT_PORT)
    wsrc, wdst = (CLIENT_WPORT, SERVER_WPORT) if to_server else (SERVER_WPORT, CLIENT_WPORT)
    payload = struct.pack("!HHHH", 1, wsrc, wdst, min(len(apdu), 0xFFFF)) + apdu
    udp_len = min(8 + len(payload), 0xFFFF)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0)  # checksum 0: none (IPv4 allows it)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, min(20 + udp_len, 0xFFFF), 1, 0, 64, 17, 0,
                     src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return hw_dst + hw_src + b"\x08\x00" + ip + udp + payload


def pcap_item(rec: ApduRecord, summary: str | None = None,
              as_json: dict[str, Any] | None = None) -> PcapItem | None:
    """The export packet of a (redacted) record: its bytes, time and comments. `summary` (the
    summary line) and `as_json` (the record's JSON object) are reused when the caller has
    them already."""
    if rec.apdu.startswith("hdlc-"):
        return None
    data = apdu_bytes(rec)
    if not data:
        return None
    as_json = dict(as_json) if as_json is not None else record_json(rec)
    as_json.pop("number", None)
    as_json["summary"] = info_text(rec, summary)
    comments = (_comment(rec, rec.plaintext() is not None), JSON_MARK + COMPACT.encode(as_json))
    return frame_bytes(data, rec.direction), rec.time, comments


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(kind: int, body: bytes) -> bytes:
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


def header_blocks() -> bytes:
    """Section header (little-endian, application name) and one Ethernet interface."""
    shb = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(4, APPLICATION) + _option(0, b"")
    idb = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0)
    return _block(0x0A0D0D0A, shb) + _block(1, idb)


def packet_block(item: PcapItem) -> bytes:
    """An enhanced packet block (microsecond time stamps, the comments as opt_comment)."""
    data, time, comments = item
    stamp = round(time * 1_000_000)
    body = struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, len(data), len(data))
    body += data + b"\0" * (-len(data) % 4)
    body += b"".join(_option(1, c.encode()) for c in comments) + _option(0, b"")
    return _block(6, body)


class PcapOut:
    """Writes the export: a file, or a fifo Wireshark reads while it is written (`flush_each`)."""

    def __init__(self, path: str | BinaryIO, flush_each: bool = False) -> None:
        self.stream: BinaryIO = open(path, "wb") if isinstance(path, str) else path
        self.flush_each = flush_each
        self.stream.write(header_blocks())
        if flush_each:
            self.stream.flush()

    def write(self, rec: ApduRecord) -> None:
        self.write_item(pcap_item(rec))

    def write_item(self, item: PcapItem | None) -> None:
        """Write what `pcap_item` extracted (the form worker processes hand over)."""
        if item is None:
            return
        self.stream.write(packet_block(item))
        if self.flush_each:
            self.stream.flush()

    def close(self) -> None:
        self.stream.close()
