"""Rebuild the seed case (a public trace whose keys were never published) with keys of our own.

Same structure, tags, addresses, titles, security control bytes and invocation counters as the
trace in seed-case.md: AARQ (mechanism 2, glo-initiateRequest carrying a dedicated key), AARE
(authentication-required, glo-initiateResponse), HLS pass 3 as ded-action-request, and the
meter's confirmedServiceError deciphering-error. Writes `seed-case.pcap` (link type 147, serial
HDLC) and `seed-case.keys.toml` beside this file.

    python3 pcaps/make_seed_case.py
"""

from __future__ import annotations

from pathlib import Path

from scapy.compat import raw
from scapy.packet import Raw
from scapy.utils import RawPcapWriter

from keys.gcm import protect
from keys.hls import compute_hls
from layers.fields import encode_length
from layers.hdlc import HDLC, LLC

HERE = Path(__file__).resolve().parent
EK = bytes.fromhex("5EED0CA5E0000000000000000000EC01")
AK = bytes.fromhex("5EED0CA5E0000000000000000000AC01")
DK = bytes.fromhex("5EED0CA5E000000000000000000DED01")
HLS_SECRET = b"SeedCase"
CLIENT_TITLE = b"ABCDEFGH"
SERVER_TITLE = bytes.fromhex("474F450000581CF1")
CTOS = bytes.fromhex("4E261D0E1D1E416A0563742355463E4C")
STOC = bytes.fromhex("47656E7573370000000009 1D3648C37E".replace(" ", ""))
CLIENT, SERVER = 48, 1
T0 = 1_700_000_000.0


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(body)) + body


def _ciphered(tag: int, sc: int, ic: int, key: bytes, title: bytes, plain: bytes) -> bytes:
    body = bytes([sc]) + ic.to_bytes(4, "big") + protect(sc, key, AK, title, ic, plain)
    return _tlv(tag, body)


def aarq() -> bytes:
    initiate = bytes.fromhex("0101") + bytes([len(DK)]) + DK + bytes.fromhex(
        "0000065F1F040000181D0400"[:-4] + "FFFF")
    glo = _ciphered(0x21, 0x30, 0, EK, CLIENT_TITLE, initiate)
    body = (bytes.fromhex("A109060760857405080103") + _tlv(0xA6, _tlv(0x04, CLIENT_TITLE))
            + bytes.fromhex("8A0207808B0760857405080202") + _tlv(0xAC, _tlv(0x80, CTOS))
            + _tlv(0xBE, _tlv(0x04, glo)))
    return _tlv(0x60, body)


def aare() -> bytes:
    initiate = bytes.fromhex("0800065F1F040000181D04000007")
    glo = _ciphered(0x28, 0x30, 0x488, EK, SERVER_TITLE, initiate)
    body = (bytes.fromhex("A109060760857405080103A203020100A305A10302010E8802078089076085740508"
                          "0202") + _tlv(0xAA, _tlv(0x80, STOC))
            + _tlv(0xA4, _tlv(0x04, SERVER_TITLE)) + _tlv(0xBE, _tlv(0x04, glo)))
    return _tlv(0x61, body)


def pass3() -> bytes:
    f_stoc = compute_hls(2, STOC, secret=HLS_SECRET)
    action = bytes.fromhex("C301C1000F0000280000FF010109") + encode_length(len(f_stoc)) + f_stoc
    return _ciphered(0xD3, 0x30, 3, DK, CLIENT_TITLE, action)


def frames() -> list[bytes]:
    cs = dict(destination=SERVER, source=CLIENT)
    sc = dict(destination=CLIENT, source=SERVER)
    req, rsp = LLC(ssap=0xE6), LLC(ssap=0xE7)
    return [raw(HDLC(**cs, control=0x10, information=req / Raw(aarq()))),
            raw(HDLC(**sc, control=0x30, information=rsp / Raw(aare()))),
            raw(HDLC(**cs, control=0x32, information=req / Raw(pass3()))),
            raw(HDLC(**sc, control=0x52, information=rsp / Raw(bytes.fromhex("0E060006"))))]


KEYS_TOML = f"""# Keys of the rebuilt seed case (made up for this capture; never used on a meter).
[[meter]]
name = "seed-meter"
system_title = "{SERVER_TITLE.hex().upper()}"
client_system_title = "{CLIENT_TITLE.hex().upper()}"
ek = "{EK.hex().upper()}"
ak = "{AK.hex().upper()}"
hls_secret = "text:{HLS_SECRET.decode()}"
"""


def main() -> None:
    writer = RawPcapWriter(str(HERE / "seed-case.pcap"), linktype=147)
    writer.write_header(None)
    for i, frame in enumerate(frames()):
        t = T0 + 0.25 * i
        writer.write_packet(frame, sec=int(t), usec=round((t % 1) * 1e6))
    writer.close()
    keys = HERE / "seed-case.keys.toml"
    keys.write_text(KEYS_TOML)
    keys.chmod(0o600)


if __name__ == "__main__":
    main()
