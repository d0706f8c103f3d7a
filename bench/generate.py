"""Deterministic head-end captures for the benchmark: 10k, 100k or 1M APDUs.

What one capture holds (Ethernet/IPv4/TCP, link type 1, written with Scapy's RawPcapWriter):

- associations of a head-end (10.0.0.1) with many meters, several TCP connections in flight at
  once and interleaved; each connection has a real SYN/SYN-ACK/ACK, running sequence and
  acknowledgement numbers, MSS-sized segments for large PDUs and a FIN exchange;
- most meters speak the IEC 62056-47 wrapper on TCP 4059, the others HDLC over TCP on another
  port (`--hdlc-port`, default 4061; the dissector needs `--port 4061:hdlc`), with SNRM/UA
  before and DISC/UA after the association and proper N(S)/N(R);
- each association: AARQ (mechanism 5 HLS-GMAC, glo-initiateRequest carrying a fresh dedicated
  key), AARE (authentication required, glo-initiateResponse), HLS pass 3/4 as glo-action with
  f(StoC)/f(CtoS) computed by `keys.hls`, then a mix of ded- and glo-ciphered get/set/action
  requests and responses (selective-access profile reads answered with
  get-response-with-datablock over several blocks, a few large responses split over TCP
  segments, a few data-access errors), RLRQ/RLRE with ciphered user-information;
- some wrapper connections first run a public-client association (no security) that reads the
  invocation counter, as head-ends do before the secured association;
- push connections: a meter connects to the head-end and sends data-notifications inside
  general-glo-ciphering.

`--plain` writes the same kind of capture without any ciphering (NAME = `plain-10k` etc.):
associations use low-level security (AARQ with mechanism 1 and the meter's password, a plain
initiate-request without dedicated key; AARE accepted with a plain initiate-response; no HLS
pass 3/4), the same mix of get/set/action and profile reads with datablocks in plain APDUs,
RLRQ/RLRE without user-information, no public-client association first, and push sessions send
plain data-notifications. Every key kind in NAME.pdus is 0; the keystore is still written, but
a plain capture is read without `--keys`.

Keys: every meter has its own EK/AK/system title (one `[[meter]]` entry each in the keystore),
the head-end one client system title; invocation counters grow per meter and side.

Files written beside each other (NAME = `headend-10k`, or `plain-10k` with `--plain`):
  NAME.pcap          the capture
  NAME.keys.toml     keystore for `dlms-dissect read --keys`
  NAME.pdus          every wrapper PDU / HDLC frame of the capture, in capture order, for the
                     translator benchmarks: records of `PDU_HEADER` then the PDU bytes
  NAME.sessions.tsv  per session: kind, transport, client/server titles, EK, AK, dedicated key
  NAME.json          manifest: counts, ports, seed, what was generated

    python3 bench/generate.py --sizes 10k,100k [--out /tmp/dlms-bench] [--seed 4059] [--plain]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from scapy.utils import RawPcapWriter

from keys.gcm import protect
from keys.hls import compute_hls
from layers.crc import crc16

HERE = Path(__file__).resolve().parent
#: Captures are large (1M APDUs: ~200 MB pcap + ~130 MB PDU list): keep them out of the work
#: tree so they are never committed.
DEFAULT_OUT = Path(os.environ.get("DLMS_BENCH_OUT") or Path(tempfile.gettempdir()) / "dlms-bench")
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
DEFAULT_SEED = 4059
WRAPPER_PORT = 4059
HDLC_PORT = 4061
T0 = 1_760_000_000.0

#: one record of NAME.pdus: session (u32), last capture frame (u32), direction (0 = client->
#: server, 1 = server->client), key kind (0 none, 1 global, 2 dedicated), inner tag (the
#: plaintext APDU's tag, 0 for a non-APDU frame), outer tag, length (u32); then the PDU.
PDU_HEADER = struct.Struct("<IIBBBBI")
KIND_NONE, KIND_GLOBAL, KIND_DEDICATED = 0, 1, 2

# ---------------------------------------------------------------------------------------------
# Encoding helpers (A-XDR / BER)
# ---------------------------------------------------------------------------------------------


def enc_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    if n < 0x100:
        return bytes((0x81, n))
    return bytes((0x82, n >> 8, n & 0xFF))


def tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + enc_len(len(body)) + body


def octets(b: bytes) -> bytes:
    return b"\x09" + enc_len(len(b)) + b


def u32(v: int) -> bytes:
    return b"\x06" + v.to_bytes(4, "big")


def u16(v: int) -> bytes:
    return b"\x12" + v.to_bytes(2, "big")


def datetime_bytes(t: float) -> bytes:
    """COSEM date-time (12 bytes) of a POSIX time, UTC, deviation not specified."""
    tm = time.gmtime(t)
    return struct.pack(">HBBBBBBBhB", tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_wday + 1,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, 0, -0x8000, 0)


def obis(text: str) -> bytes:
    return bytes(int(x) for x in text.replace("-", ".").replace(":", ".").split("."))


# Plain tags and their glo-/ded- envelopes.
GET_REQ, SET_REQ, ACT_REQ, GET_RSP, SET_RSP, ACT_RSP = 0xC0, 0xC1, 0xC3, 0xC4, 0xC5, 0xC7
GLO = {0xC0: 0xC8, 0xC1: 0xC9, 0xC3: 0xCB, 0xC4: 0xCC, 0xC5: 0xCD, 0xC7: 0xCF, 0x01: 0x21,
       0x08: 0x28}
DED = {0xC0: 0xD0, 0xC1: 0xD1, 0xC3: 0xD3, 0xC4: 0xD4, 0xC5: 0xD5, 0xC7: 0xD7}
GENERAL_GLO = 0xDB
SC = 0x30  # authenticated and encrypted, suite 0

LN_CIPHERED = bytes.fromhex("A109060760857405080103")
LN_PLAIN = bytes.fromhex("A109060760857405080101")
MECH_GMAC = bytes.fromhex("8B0760857405080205")
MECH_LLS = bytes.fromhex("8B0760857405080201")  # mechanism-name: low-level security
MECH_GMAC_AARE = bytes.fromhex("890760857405080205")
ACSE_REQ = bytes.fromhex("8A020780")
ACSE_RSP = bytes.fromhex("88020780")
# initiate-request without dedicated key / user-information of a public client
PUBLIC_INITIATE = bytes.fromhex("01000000065F1F0400001E1DFFFF")
INITIATE_RESPONSE = bytes.fromhex("0800065F1F0400001E1D04000007")
ACCEPTED = bytes.fromhex("A203020100A305A103020100")  # result accepted, diagnostic null
RLRQ_PLAIN = bytes.fromhex("6203800100")  # release-request, reason normal, no user-information
RLRE_PLAIN = bytes.fromhex("6303800100")
HLS_LN = (15, obis("0.0.40.0.0.255"), 1)  # association LN, reply_to_HLS_authentication

# ---------------------------------------------------------------------------------------------
# COSEM services of the mix
# ---------------------------------------------------------------------------------------------

Value = Callable[[random.Random, float], bytes]


def _dt(_r: random.Random, t: float) -> bytes:
    return octets(datetime_bytes(t))


def _serial(r: random.Random, _t: float) -> bytes:
    return octets(b"KFM%013d" % r.randrange(10**12))


def _energy(r: random.Random, _t: float) -> bytes:
    return u32(r.randrange(1_000_000, 90_000_000))


def _volt(r: random.Random, _t: float) -> bytes:
    return u16(r.randrange(2250, 2400))


def _amp(r: random.Random, _t: float) -> bytes:
    return u16(r.randrange(0, 6000))


def _scaler(_r: random.Random, _t: float) -> bytes:
    return bytes.fromhex("02020F00161E")


def _bool(r: random.Random, _t: float) -> bytes:
    return bytes((0x03, r.randrange(2)))


def _enum(r: random.Random, _t: float) -> bytes:
    return bytes((0x16, r.randrange(3)))


GETS: list[tuple[int, bytes, int, Value]] = [
    (8, obis("0.0.1.0.0.255"), 2, _dt),
    (1, obis("0.0.96.1.0.255"), 2, _serial),
    (3, obis("1.0.1.8.0.255"), 2, _energy),
    (3, obis("1.0.1.8.0.255"), 3, _scaler),
    (3, obis("1.0.2.8.0.255"), 2, _energy),
    (3, obis("1.0.32.7.0.255"), 2, _volt),
    (3, obis("1.0.52.7.0.255"), 2, _volt),
    (3, obis("1.0.31.7.0.255"), 2, _amp),
    (70, obis("0.0.96.3.10.255"), 2, _bool),
    (70, obis("0.0.96.3.10.255"), 3, _enum),
    (1, obis("0.0.43.1.0.255"), 2, _energy),
]
SETS: list[tuple[int, bytes, int, Value]] = [
    (8, obis("0.0.1.0.0.255"), 2, _dt),
    (71, obis("0.0.17.0.0.255"), 3, _energy),
    (1, obis("0.0.96.50.0.255"), 2, _serial),
]
ACTIONS: list[tuple[int, bytes, int, bytes | None]] = [
    (70, obis("0.0.96.3.10.255"), 1, b"\x0f\x00"),
    (70, obis("0.0.96.3.10.255"), 2, b"\x0f\x00"),
    (8, obis("0.0.1.0.0.255"), 1, b"\x0f\x00"),
    (9, obis("0.0.10.0.0.255"), 1, u16(1)),
    (7, obis("1.0.99.1.0.255"), 2, b"\x0f\x00"),
]
LOAD_PROFILE = obis("1.0.99.1.0.255")
EVENT_LOG = obis("0.0.99.98.0.255")
CLOCK = obis("0.0.1.0.0.255")


def attr_desc(class_id: int, instance: bytes, attr: int) -> bytes:
    return class_id.to_bytes(2, "big") + instance + bytes((attr,))


def range_access(t_from: float, t_to: float) -> bytes:
    """Selective access by range on the clock column (selected values: all)."""
    restricting = b"\x02\x04" + u16(8) + octets(CLOCK) + b"\x0f\x02" + u16(0)
    return (b"\x01\x01\x02\x04" + restricting + octets(datetime_bytes(t_from))
            + octets(datetime_bytes(t_to)) + b"\x01\x00")


def profile_rows(r: random.Random, t: float, rows: int, event: bool) -> bytes:
    """Encoded array of profile rows: (clock, value, value, status) or (clock, event code)."""
    out = [b"\x01" + enc_len(rows)]
    base = int(t) - int(t) % 900 - rows * 900
    e1, e2 = r.randrange(1_000_000, 9_000_000), r.randrange(0, 1_000_000)
    for i in range(rows):
        dt = octets(datetime_bytes(base + i * 900))
        if event:
            out.append(b"\x02\x02" + dt + u16(r.randrange(1, 255)))
        else:
            e1 += r.randrange(0, 400)
            e2 += r.randrange(0, 50)
            out.append(b"\x02\x04" + dt + u32(e1) + u32(e2) + bytes((0x11, r.randrange(4))))
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Meters, keys, sessions
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Meter:
    index: int
    title: bytes
    ek: bytes
    ak: bytes
    ip: bytes
    hdlc: bool
    physical: int
    client_ic: int
    server_ic: int
    busy: bool = False


@dataclass(slots=True)
class Pdu:
    """One wrapper PDU or HDLC frame a session sends, with what the benchmark needs to know."""

    from_client: bool
    data: bytes
    kind: int = KIND_NONE
    inner: int = 0
    outer: int = 0


@dataclass(slots=True)
class Session:
    sid: int
    meter: Meter
    kind: str  # association, push
    transport: str  # wrapper, hdlc
    client_ip: bytes
    client_port: int
    server_port: int
    pdus: list[Pdu]
    dedicated: bytes | None = None
    pos: int = 0
    state: str = "new"  # new, open, closing, done
    seq: dict[bool, int] = field(default_factory=dict)
    apdus: int = 0


class Builder:
    """Builds the APDUs and link frames of one session; knows the head-end and the meters."""

    def __init__(self, rng: random.Random, client_title: bytes, plain: bool = False) -> None:
        self.r = rng
        self.client_title = client_title
        #: no ciphering at all: LLS associations, plain services and data-notifications
        self.plain = plain

    # -- security ---------------------------------------------------------------------------
    def cipher(self, m: Meter, from_client: bool, key: bytes, plain: bytes, tag: int) -> bytes:
        if from_client:
            ic, title = m.client_ic, self.client_title
            m.client_ic += 1
        else:
            ic, title = m.server_ic, m.title
            m.server_ic += 1
        body = bytes((SC,)) + ic.to_bytes(4, "big") + protect(SC, key, m.ak, title, ic, plain)
        return tlv(tag, body)

    def general_glo(self, m: Meter, plain: bytes) -> bytes:
        ic = m.server_ic
        m.server_ic += 1
        body = bytes((SC,)) + ic.to_bytes(4, "big") + protect(SC, m.ek, m.ak, m.title, ic, plain)
        return bytes((GENERAL_GLO, 8)) + m.title + enc_len(len(body)) + body

    # -- ACSE -------------------------------------------------------------------------------
    def aarq(self, m: Meter, dk: bytes, ctos: bytes) -> bytes:
        initiate = b"\x01\x01\x10" + dk + bytes.fromhex("0000065F1F0400001E5DFFFF")
        glo = self.cipher(m, True, m.ek, initiate, 0x21)
        body = (LN_CIPHERED + tlv(0xA6, tlv(0x04, self.client_title)) + ACSE_REQ + MECH_GMAC
                + tlv(0xAC, tlv(0x80, ctos)) + tlv(0xBE, tlv(0x04, glo)))
        return tlv(0x60, body)

    def aare(self, m: Meter, stoc: bytes) -> bytes:
        glo = self.cipher(m, False, m.ek, INITIATE_RESPONSE, 0x28)
        body = (LN_CIPHERED + bytes.fromhex("A203020100A305A10302010E")
                + tlv(0xA4, tlv(0x04, m.title)) + ACSE_RSP + MECH_GMAC_AARE
                + tlv(0xAA, tlv(0x80, stoc)) + tlv(0xBE, tlv(0x04, glo)))
        return tlv(0x61, body)

    @staticmethod
    def password(m: Meter) -> bytes:
        """The meter's LLS secret (made up, printable, one per meter)."""
        return b"%08d" % (20_000_000 + m.index * 7_919)

    def aarq_lls(self, m: Meter) -> bytes:
        """AARQ of a low-level-security association: the password, a plain initiate-request."""
        body = (LN_PLAIN + ACSE_REQ + MECH_LLS + tlv(0xAC, tlv(0x80, self.password(m)))
                + tlv(0xBE, tlv(0x04, PUBLIC_INITIATE)))
        return tlv(0x60, body)

    @staticmethod
    def aare_plain() -> bytes:
        return tlv(0x61, LN_PLAIN + ACCEPTED + tlv(0xBE, tlv(0x04, INITIATE_RESPONSE)))

    def rlrq(self, m: Meter, dk: bytes) -> bytes:
        initiate = b"\x01\x01\x10" + dk + bytes.fromhex("0000065F1F0400001E5DFFFF")
        glo = self.cipher(m, True, m.ek, initiate, 0x21)
        return tlv(0x62, b"\x80\x01\x00" + tlv(0xBE, tlv(0x04, glo)))

    def rlre(self, m: Meter) -> bytes:
        glo = self.cipher(m, False, m.ek, INITIATE_RESPONSE, 0x28)
        return tlv(0x63, b"\x80\x01\x00" + tlv(0xBE, tlv(0x04, glo)))

    # -- the service mix --------------------------------------------------------------------
    def exchanges(self, t: float, block_max: int, big_ok: bool
                  ) -> Iterator[tuple[bytes, bytes | list[tuple[bytes, bytes]]]]:
        """Plain (request, response) pairs; a datablock read yields a list of pairs."""
        r = self.r
        iid = r.randrange(16)
        while True:
            iid = (iid + 1) & 0x0F
            inv = bytes((0xC0 | iid,))
            x = r.random()
            if x < 0.56:
                cid, inst, attr, val = GETS[r.randrange(len(GETS))]
                req = bytes((GET_REQ, 1)) + inv + attr_desc(cid, inst, attr) + b"\x00"
                if r.random() < 0.03:
                    rsp = bytes((GET_RSP, 1)) + inv + bytes((1, r.choice((3, 4, 11))))
                else:
                    rsp = bytes((GET_RSP, 1)) + inv + b"\x00" + val(r, t)
                yield req, rsp
            elif x < 0.70:
                yield from self._profile_read(inv, t, block_max, big_ok)
            elif x < 0.84:
                cid, inst, attr, val = SETS[r.randrange(len(SETS))]
                req = bytes((SET_REQ, 1)) + inv + attr_desc(cid, inst, attr) + b"\x00" + val(r, t)
                yield req, bytes((SET_RSP, 1)) + inv + b"\x00"
            else:
                cid, inst, method, param = ACTIONS[r.randrange(len(ACTIONS))]
                req = bytes((ACT_REQ, 1)) + inv + attr_desc(cid, inst, method)
                req += b"\x01" + param if param is not None else b"\x00"
                yield req, bytes((ACT_RSP, 1)) + inv + b"\x00\x00"

    def _profile_read(self, inv: bytes, t: float, block_max: int, big_ok: bool
                      ) -> Iterator[list[tuple[bytes, bytes]]]:
        r = self.r
        event = r.random() < 0.3
        inst = EVENT_LOG if event else LOAD_PROFILE
        rows = r.randrange(20, 60) if event else r.choice((24, 48, 96))
        data = profile_rows(r, t, rows, event)
        access = range_access(t - rows * 900, t)
        req = bytes((GET_REQ, 1)) + inv + attr_desc(7, inst, 2) + access
        if big_ok and len(data) <= 3000 and r.random() < 0.25:
            yield [(req, bytes((GET_RSP, 1)) + inv + b"\x00" + data)]  # one large PDU
            return
        size = r.randrange(block_max // 2, block_max)
        blocks = [data[i:i + size] for i in range(0, len(data), size)]
        pairs = []
        for n, chunk in enumerate(blocks, 1):
            last = b"\x01" if n == len(blocks) else b"\x00"
            rsp = (bytes((GET_RSP, 2)) + inv + last + n.to_bytes(4, "big") + b"\x00"
                   + enc_len(len(chunk)) + chunk)
            pairs.append((req, rsp))
            req = bytes((GET_REQ, 2)) + inv + n.to_bytes(4, "big")
        yield pairs

    def notification(self, m: Meter, t: float, n: int) -> bytes:
        r = self.r
        body = (b"\x02\x04" + octets(obis("0.0.25.9.0.255")) + octets(m.title)
                + u32(r.randrange(1_000_000, 90_000_000)) + octets(datetime_bytes(t)))
        return (b"\x0f" + (0x40000000 | n).to_bytes(4, "big") + b"\x0c" + datetime_bytes(t)
                + body)


# ---------------------------------------------------------------------------------------------
# Link framing
# ---------------------------------------------------------------------------------------------


def wrapper(src: int, dst: int, apdu: bytes) -> bytes:
    return struct.pack(">HHHH", 1, src, dst, len(apdu)) + apdu


def hdlc_addr(upper: int, lower: int) -> bytes:
    return bytes(((upper >> 7 & 0x7F) << 1, (upper & 0x7F) << 1,
                  (lower >> 7 & 0x7F) << 1, (lower & 0x7F) << 1 | 1))


def hdlc_frame(dest: bytes, src: bytes, control: int, info: bytes = b"") -> bytes:
    n = 2 + len(dest) + len(src) + 1 + 2 + (len(info) + 2 if info else 0)
    head = bytes((0xA0 | (n >> 8 & 0x07), n & 0xFF)) + dest + src + bytes((control,))
    if info:
        hcs = crc16(head)
        head += bytes((hcs & 0xFF, hcs >> 8)) + info
    fcs = crc16(head)
    return b"\x7e" + head + bytes((fcs & 0xFF, fcs >> 8)) + b"\x7e"


SNRM_INFO = bytes.fromhex("8180140502040006020400070400000001080400000001")  # max info 1024, w=1
CLIENT_SAP = 1
PUBLIC_SAP = 16


class HdlcLink:
    def __init__(self, m: Meter) -> None:
        self.server = hdlc_addr(1, m.physical)
        self.client = bytes(((CLIENT_SAP << 1) | 1,))
        self.ns = {True: 0, False: 0}  # send counters, by "sent by the client"

    def info(self, from_client: bool, apdu: bytes) -> bytes:
        mine, peer = self.ns[from_client], self.ns[not from_client]
        control = (peer & 7) << 5 | 0x10 | (mine & 7) << 1
        self.ns[from_client] = mine + 1
        llc = b"\xe6\xe6\x00" if from_client else b"\xe6\xe7\x00"
        if from_client:
            return hdlc_frame(self.server, self.client, control, llc + apdu)
        return hdlc_frame(self.client, self.server, control, llc + apdu)

    def command(self, control: int, info: bytes = b"") -> bytes:
        return hdlc_frame(self.server, self.client, control, info)

    def response(self, control: int, info: bytes = b"") -> bytes:
        return hdlc_frame(self.client, self.server, control, info)


# ---------------------------------------------------------------------------------------------
# Session plans
# ---------------------------------------------------------------------------------------------


def plan_association(b: Builder, sid: int, m: Meter, budget: int, t: float,
                     client_port: int, hdlc_port: int) -> Session:
    """An association whose APDU count is at most `budget` (>= 6)."""
    r = b.r
    pdus: list[Pdu] = []
    link = HdlcLink(m) if m.hdlc else None

    def put(from_client: bool, apdu: bytes, kind: int, inner: int, src: int = CLIENT_SAP
            ) -> None:
        if link is not None:
            data = link.info(from_client, apdu)
        elif from_client:
            data = wrapper(src, 1, apdu)
        else:
            data = wrapper(1, src, apdu)
        pdus.append(Pdu(from_client, data, kind, inner, apdu[0]))

    count = 0
    if link is not None:
        pdus.append(Pdu(True, link.command(0x93, SNRM_INFO)))
        pdus.append(Pdu(False, link.response(0x73, SNRM_INFO)))
    elif not b.plain and budget >= 12 and r.random() < 0.2:
        # public client reads the frame counter first (no security)
        aarq = tlv(0x60, LN_PLAIN + tlv(0xBE, tlv(0x04, PUBLIC_INITIATE)))
        aare = b.aare_plain()
        inv = b"\xc1"
        get = bytes((GET_REQ, 1)) + inv + attr_desc(1, obis("0.0.43.1.1.255"), 2) + b"\x00"
        rsp = bytes((GET_RSP, 1)) + inv + b"\x00" + u32(m.client_ic)
        for fc, apdu in ((True, aarq), (False, aare), (True, get), (False, rsp),
                         (True, RLRQ_PLAIN), (False, RLRE_PLAIN)):
            put(fc, apdu, KIND_NONE, apdu[0], PUBLIC_SAP)
        count += 6
    if b.plain:  # LLS: the password in the AARQ, every APDU in the clear
        put(True, b.aarq_lls(m), KIND_NONE, 0x60)
        put(False, b.aare_plain(), KIND_NONE, 0x61)

        def clear(req: bytes, rsp: bytes, _ded: bool) -> None:
            put(True, req, KIND_NONE, req[0])
            put(False, rsp, KIND_NONE, rsp[0])

        count = _service_mix(b, m, t, budget, count + 4, clear)  # + AARQ, AARE, RLRQ, RLRE
        put(True, RLRQ_PLAIN, KIND_NONE, 0x62)
        put(False, RLRE_PLAIN, KIND_NONE, 0x63)
        return _association_session(sid, m, client_port, hdlc_port, pdus, link, count, None)
    dk = r.randbytes(16)
    ctos, stoc = r.randbytes(16), r.randbytes(16)
    put(True, b.aarq(m, dk, ctos), KIND_GLOBAL, 0x01)
    put(False, b.aare(m, stoc), KIND_GLOBAL, 0x08)
    # HLS pass 3 / pass 4: the f() values carry their own invocation counters
    f_stoc = compute_hls(5, stoc, ek=m.ek, ak=m.ak, system_title=b.client_title,
                         ic=m.client_ic, sc=0x10)
    m.client_ic += 1
    req = bytes((ACT_REQ, 1, 0xC1)) + attr_desc(*HLS_LN) + b"\x01\x09" + enc_len(17) + f_stoc
    put(True, b.cipher(m, True, m.ek, req, GLO[ACT_REQ]), KIND_GLOBAL, ACT_REQ)
    f_ctos = compute_hls(5, ctos, ek=m.ek, ak=m.ak, system_title=m.title, ic=m.server_ic,
                         sc=0x10)
    m.server_ic += 1
    rsp = bytes((ACT_RSP, 1, 0xC1, 0, 1, 0, 9, 17)) + f_ctos
    put(False, b.cipher(m, False, m.ek, rsp, GLO[ACT_RSP]), KIND_GLOBAL, ACT_RSP)

    def sealed(req: bytes, rsp: bytes, ded: bool) -> None:
        table, key, kind = (DED, dk, KIND_DEDICATED) if ded else (GLO, m.ek, KIND_GLOBAL)
        put(True, b.cipher(m, True, key, req, table[req[0]]), kind, req[0])
        put(False, b.cipher(m, False, key, rsp, table[rsp[0]]), kind, rsp[0])

    # + AARQ, AARE, pass 3, pass 4, RLRQ, RLRE
    count = _service_mix(b, m, t, budget, count + 6, sealed)
    put(True, b.rlrq(m, dk), KIND_GLOBAL, 0x01)
    put(False, b.rlre(m), KIND_GLOBAL, 0x08)
    return _association_session(sid, m, client_port, hdlc_port, pdus, link, count, dk)


def _service_mix(b: Builder, m: Meter, t: float, budget: int, count: int,
                 emit: Callable[[bytes, bytes, bool], None]) -> int:
    """The exchanges of one association, `emit(request, response, dedicated)` each, until
    the session's APDU count (`count` so far) reaches its target; the new count."""
    r = b.r
    target = min(budget, count + 2 * r.randrange(4, 30))
    for item in b.exchanges(t, 900 if m.hdlc else 1200, not m.hdlc):
        pairs = item if isinstance(item, list) else [item]
        if count + 2 * len(pairs) > target:
            if count + 2 > target:
                break
            continue  # a shorter exchange may still fit
        ded = r.random() < 0.7  # drawn in a plain capture too, where nothing uses it
        for req, rsp in pairs:
            emit(req, rsp, ded)
            count += 2
    return count


def _association_session(sid: int, m: Meter, client_port: int, hdlc_port: int,
                         pdus: list[Pdu], link: HdlcLink | None, count: int,
                         dk: bytes | None) -> Session:
    """The session of a planned association, with DISC/UA after it on HDLC."""
    if link is not None:
        pdus.append(Pdu(True, link.command(0x53)))
        pdus.append(Pdu(False, link.response(0x73)))
    port = hdlc_port if m.hdlc else WRAPPER_PORT
    s = Session(sid, m, "association", "hdlc" if m.hdlc else "wrapper", HEADEND_IP,
                client_port, port, pdus, dk)
    s.apdus = count
    return s


def plan_push(b: Builder, sid: int, m: Meter, budget: int, t: float, port: int) -> Session:
    """A meter connects to the head-end and pushes 1..3 data-notifications."""
    n = min(budget, b.r.randrange(1, 4))
    pdus = []
    for i in range(n):
        plain = b.notification(m, t + i, m.server_ic)
        if b.plain:  # the data-notification itself, its long-invoke-id counting up
            m.server_ic += 1
            pdus.append(Pdu(True, wrapper(1, 0x66, plain), KIND_NONE, plain[0], plain[0]))
            continue
        apdu = b.general_glo(m, plain)
        pdus.append(Pdu(True, wrapper(1, 0x66, apdu), KIND_GLOBAL, plain[0], apdu[0]))
    s = Session(sid, m, "push", "wrapper", m.ip, port, WRAPPER_PORT, pdus)
    s.apdus = n
    return s


HEADEND_IP = bytes((10, 0, 0, 1))
HEADEND_MAC = bytes.fromhex("020000000001")
ROUTER_MAC = bytes.fromhex("0200000000fe")
MSS = 1460

# ---------------------------------------------------------------------------------------------
# Ethernet / IPv4 / TCP
# ---------------------------------------------------------------------------------------------

_IP = struct.Struct(">BBHHHBBH4s4s")
_TCP = struct.Struct(">HHIIHHHH")
_PSEUDO = struct.Struct(">4s4sBBH")
SYN, ACK, FIN, PSH = 0x02, 0x10, 0x01, 0x08


def _checksum(data: bytes) -> bytes:
    if len(data) & 1:
        data += b"\x00"
    s = sum(array("H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return struct.pack("=H", ~s & 0xFFFF)


class Wire:
    """Writes TCP segments of sessions as Ethernet frames and counts capture frames."""

    def __init__(self, writer: RawPcapWriter) -> None:
        self.w = writer
        self.frame = 0
        self.ip_id = 0

    def segment(self, t: float, src: bytes, sport: int, dst: bytes, dport: int, seq: int,
                ack: int, flags: int, payload: bytes = b"") -> None:
        tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x5000 | flags, 64240,
                        0, 0)
        csum = _checksum(_PSEUDO.pack(src, dst, 0, 6, 20 + len(payload)) + tcp + payload)
        tcp = tcp[:16] + csum + tcp[18:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = _IP.pack(0x45, 0, 40 + len(payload), self.ip_id, 0x4000, 64, 6, 0, src, dst)
        ip = ip[:10] + _checksum(ip) + ip[12:]
        to_headend = dst == HEADEND_IP
        eth = (HEADEND_MAC + ROUTER_MAC if to_headend else ROUTER_MAC + HEADEND_MAC) + b"\x08\x00"
        sec = int(t)
        self.w.write_packet(eth + ip + tcp + payload, sec=sec, usec=int((t - sec) * 1e6))
        self.frame += 1


class Generator:
    def __init__(self, total: int, seed: int, meters: int, concurrency: int, hdlc_port: int,
                 hdlc_share: float, push_share: float, plain: bool = False) -> None:
        self.total = total
        self.r = random.Random(seed)
        self.concurrency = concurrency
        self.hdlc_port = hdlc_port
        self.push_share = push_share
        self.client_title = b"HES" + bytes.fromhex("0000000001")
        self.builder = Builder(self.r, self.client_title, plain)
        r = self.r
        self.meters = []
        for i in range(meters):
            hdlc = r.random() < hdlc_share
            ip = bytes((10, 1 + i // 250, i % 250 + 1, 2 if hdlc else 1))
            self.meters.append(Meter(i, b"KFM" + (0x100000 + i).to_bytes(5, "big"),
                                     r.randbytes(16), r.randbytes(16), ip, hdlc,
                                     0x10 + i % 0x3F00, r.randrange(1, 50_000),
                                     r.randrange(1, 50_000)))
        self.t = T0
        self.sessions: list[Session] = []
        self.stats: Counter[str] = Counter()

    def _new_session(self, sid: int, budget: int) -> Session:
        r = self.r
        free = [m for m in self.meters if not m.busy]
        m = free[r.randrange(len(free))]
        m.busy = True
        port = 40000 + sid % 20000
        push = budget < 6 or r.random() < self.push_share
        if push:
            s = plan_push(self.builder, sid, m, budget, self.t, port)
        else:
            s = plan_association(self.builder, sid, m, budget, self.t, port, self.hdlc_port)
        s.seq = {True: r.getrandbits(32), False: r.getrandbits(32)}
        return s

    def run(self, out: Path, name: str) -> dict[str, object]:
        pcap_path = out / f"{name}.pcap"
        writer = RawPcapWriter(str(pcap_path), linktype=1, bufsz=1 << 20)
        writer.write_header(None)
        wire = Wire(writer)
        pdu_file = open(out / f"{name}.pdus", "wb", buffering=1 << 20)
        sess_file = open(out / f"{name}.sessions.tsv", "w", buffering=1 << 20)
        sess_file.write("#sid\tkind\ttransport\tclient_title\tserver_title\tek\tak\tdedicated\n")
        planned = emitted = sid = 0
        active: list[Session] = []
        r = self.r
        started = time.perf_counter()
        while True:
            while (len(active) < self.concurrency and planned < self.total
                   and len(active) < len(self.meters)):
                s = self._new_session(sid, self.total - planned)
                sid += 1
                planned += s.apdus
                active.append(s)
                self.stats[f"sessions.{s.kind}.{s.transport}"] += 1
                m = s.meter
                sess_file.write(f"{s.sid}\t{s.kind}\t{s.transport}\t{self.client_title.hex()}\t"
                                f"{m.title.hex()}\t{m.ek.hex()}\t{m.ak.hex()}\t"
                                f"{s.dedicated.hex() if s.dedicated else '-'}\n")
            if not active:
                break
            i = r.randrange(len(active))
            s = active[i]
            self.t += r.expovariate(400.0)
            emitted += self._step(wire, s, pdu_file)
            if s.state == "done":
                s.meter.busy = False
                active[i] = active[-1]
                active.pop()
        writer.close()
        pdu_file.close()
        sess_file.close()
        assert emitted == self.total, (emitted, self.total)
        keys = out / f"{name}.keys.toml"
        keys.write_text(self.keystore())
        keys.chmod(0o600)
        manifest = {
            "name": name, "apdus": emitted, "frames": wire.frame, "seed": None,
            "meters": len(self.meters), "hdlc_meters": sum(m.hdlc for m in self.meters),
            "wrapper_port": WRAPPER_PORT, "hdlc_port": self.hdlc_port,
            "ours_args": ["--port", f"{self.hdlc_port}:hdlc"], "plain": self.builder.plain,
            "client_title": self.client_title.hex(), "seconds": 0.0,
            "pcap_bytes": pcap_path.stat().st_size, "counts": dict(sorted(self.stats.items())),
        }
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        return manifest

    def keystore(self) -> str:
        lines = ["# Keys of a generated benchmark capture (made up; never used on a meter).\n"]
        for m in self.meters:
            lines.append(f'[[meter]]\nname = "meter-{m.index:05d}"\n'
                         f'system_title = "{m.title.hex().upper()}"\n'
                         f'client_system_title = "{self.client_title.hex().upper()}"\n'
                         f'ek = "{m.ek.hex().upper()}"\nak = "{m.ak.hex().upper()}"\n')
        return "\n".join(lines)

    def _step(self, wire: Wire, s: Session, pdu_file: BinaryIO) -> int:
        """Emit the next thing of a session; return the number of APDUs it carried."""
        c, srv = (s.client_ip, s.client_port), (self._server_ip(s), s.server_port)
        seq = s.seq
        if s.state == "new":
            wire.segment(self.t, *c, *srv, seq[True], 0, SYN)
            wire.segment(self.t + 0.0004, *srv, *c, seq[False], seq[True] + 1, SYN | ACK)
            wire.segment(self.t + 0.0005, *c, *srv, seq[True] + 1, seq[False] + 1, ACK)
            seq[True] += 1
            seq[False] += 1
            s.state = "open"
            return 0
        if s.state == "open" and s.pos < len(s.pdus):
            p = s.pdus[s.pos]
            s.pos += 1
            a, b = (c, srv) if p.from_client else (srv, c)
            data = p.data
            for off in range(0, len(data), MSS):
                chunk = data[off:off + MSS]
                flags = ACK | (PSH if off + MSS >= len(data) else 0)
                wire.segment(self.t, *a, *b, seq[p.from_client], seq[not p.from_client], flags,
                             chunk)
                seq[p.from_client] += len(chunk)
            if p.outer:
                self.stats[f"apdu.{p.outer:02x}"] += 1
            head = PDU_HEADER.pack(s.sid, wire.frame, 0 if p.from_client else 1, p.kind,
                                   p.inner, p.outer, len(data))
            pdu_file.write(head + data)
            return 1 if p.outer else 0
        # the TCP client closes: the head-end after an association, the meter after a push
        wire.segment(self.t, *c, *srv, seq[True], seq[False], FIN | ACK)
        wire.segment(self.t + 0.0003, *srv, *c, seq[False], seq[True] + 1, FIN | ACK)
        wire.segment(self.t + 0.0004, *c, *srv, seq[True] + 1, seq[False] + 1, ACK)
        s.state = "done"
        return 0

    @staticmethod
    def _server_ip(s: Session) -> bytes:
        return s.meter.ip if s.kind == "association" else HEADEND_IP


def read_pdus(path: str | Path, limit: int | None = None
              ) -> Iterator[tuple[int, int, int, int, int, int, bytes]]:
    """Records of a NAME.pdus file: (session, frame, direction, kind, inner, outer, bytes)."""
    size = PDU_HEADER.size
    apdus = 0
    with open(path, "rb", buffering=1 << 20) as f:
        while True:
            head = f.read(size)
            if len(head) < size:
                return
            sid, frame, direction, kind, inner, outer, n = PDU_HEADER.unpack(head)
            if outer:
                if limit is not None and apdus >= limit:
                    return
                apdus += 1
            yield sid, frame, direction, kind, inner, outer, f.read(n)


def parse_size(text: str) -> int:
    t = text.strip().lower()
    if t in SIZES:
        return SIZES[t]
    mult = 1
    if t.endswith("k"):
        t, mult = t[:-1], 1000
    elif t.endswith("m"):
        t, mult = t[:-1], 1_000_000
    return int(float(t) * mult)


def size_name(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def generate(n: int, out: Path, seed: int = DEFAULT_SEED, meters: int = 256,
             concurrency: int = 24, hdlc_port: int = HDLC_PORT, hdlc_share: float = 0.3,
             push_share: float = 0.08, force: bool = False, plain: bool = False
             ) -> dict[str, object]:
    """Write the files of one capture (unless they exist with the same parameters); `plain`:
    no ciphering (`plain-SIZE`, LLS associations, read without keys)."""
    out.mkdir(parents=True, exist_ok=True)
    name = f"{'plain' if plain else 'headend'}-{size_name(n)}"
    params = {"apdus": n, "seed": seed, "meters": meters, "concurrency": concurrency,
              "hdlc_port": hdlc_port, "hdlc_share": hdlc_share, "push_share": push_share,
              "plain": plain, "version": 1}
    man_path = out / f"{name}.json"
    files = {k: str(out / f"{name}{k}") for k in (".pcap", ".keys.toml", ".pdus", ".sessions.tsv")}
    if not force and man_path.exists():
        old = json.loads(man_path.read_text())
        if old.get("params") == params and all(Path(f).exists() for f in files.values()):
            return dict(old, files=files)
    g = Generator(n, seed, meters, concurrency, hdlc_port, hdlc_share, push_share, plain)
    manifest = g.run(out, name)
    manifest["seed"] = seed
    manifest["params"] = params
    man_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return dict(manifest, files=files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10k,100k", help="comma list: 10k,100k,1m or counts")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="output folder (default $DLMS_BENCH_OUT or /tmp/dlms-bench)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--meters", type=int, default=256, help="meters (keystore entries)")
    p.add_argument("--concurrency", type=int, default=24, help="connections in flight")
    p.add_argument("--hdlc-port", type=int, default=HDLC_PORT)
    p.add_argument("--hdlc-share", type=float, default=0.3, help="share of meters on HDLC")
    p.add_argument("--push-share", type=float, default=0.08, help="share of push sessions")
    p.add_argument("--force", action="store_true", help="regenerate even if up to date")
    p.add_argument("--plain", action="store_true",
                   help="no ciphering: LLS associations, plain APDUs (plain-SIZE; read it "
                        "without --keys)")
    args = p.parse_args(argv)
    for text in args.sizes.split(","):
        n = parse_size(text)
        man = generate(n, Path(args.out), args.seed, args.meters, args.concurrency,
                       args.hdlc_port, args.hdlc_share, args.push_share, args.force,
                       args.plain)
        print(f"{man['name']}: {man['apdus']} APDUs, {man['frames']} frames, "
              f"{int(man['pcap_bytes']) / 1e6:.1f} MB, {man['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
