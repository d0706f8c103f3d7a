"""The two user-visible bugs the architecture issue fixed: keys set by key_transfer, and the
sign-on of a serial capture written by `sniff serial --sign-on -w` read back by `read`."""

from __future__ import annotations

import io
import json
from pathlib import Path

from scapy.compat import raw
from scapy.packet import Raw
from scapy.utils import RawPcapNgWriter

from dissector.cli.main import main
from keys.context import encipher

AK = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")  # Green Book AK (notes §5.4)
OLD_EK = bytes(range(0x20, 0x30))
GET = bytes.fromhex("C0010000080000010000FF0200")  # get-request clock.time (notes §5.4)


def _decode_json(lines: list[str], *flags: str) -> list[dict]:
    out = io.StringIO()
    assert main(["decode", "--json", *flags, *lines], out) == 0
    return [json.loads(x) for x in out.getvalue().splitlines() if '"apdu"' in x]


def test_key_transfer_new_key_is_the_tag_family_key(vectors: list[dict]) -> None:
    """Security setup key_transfer (class 64 method 2) with the RFC 3394 §4.1 vector (KEK
    000102..0F wraps 00112233..FF; the corpus gives the method parameter): after the server's
    success answer the next glo- APDU is protected by the new global key. It must decipher as
    the global-unicast key of its tag family, not as a key found by trying every key (which
    added a `security.wrong-key-family` error while the keystore memo still held the old key)."""
    wrap = next(v for v in vectors if v["kind"] == "key_wrap")
    kek, new_ek = bytes.fromhex(wrap["key_hex"]), bytes.fromhex(wrap["plaintext_hex"])
    param = bytes.fromhex(wrap["key_transfer_method_parameter"])
    client, server = b"CLIENT01", b"SERVER01"
    request = bytes.fromhex("C301C10040") + bytes.fromhex("00002B0000FF") + b"\x02\x01" + param
    response = bytes.fromhex("C701C10000")  # action-response normal, success, no data
    lines = [raw(encipher(request, "glo-action-request", key=OLD_EK, ak=AK,
                          system_title=client, invocation_counter=1)).hex(),
             raw(encipher(response, "glo-action-response", key=OLD_EK, ak=AK,
                          system_title=server, invocation_counter=1)).hex(),
             raw(encipher(GET, "glo-get-request", key=new_ek, ak=AK, system_title=client,
                          invocation_counter=2)).hex()]
    rows = _decode_json(lines, "--ek", OLD_EK.hex(), "--ak", AK.hex(), "--kek", kek.hex(),
                        "--client-title", client.hex(), "--server-title", server.hex())
    assert [r["inner"] for r in rows] == ["action-request", "action-response", "get-request"]
    assert "keys.transfer-applied" in [f["code"] for f in rows[1]["expert"]]
    third = rows[2]
    assert third["security"]["tag_verified"] is True
    assert third["security"]["key_kind"] == "global-unicast"
    assert "transferred frame 2" in third["security"]["key_name"]
    assert third["plaintext"] == GET.hex().upper()
    assert [f for f in third["expert"] if f["severity"] == "error"] == []
    assert "security.wrong-key-family" not in [f["code"] for f in third["expert"]]


# IEC 62056-21 mode E messages from the byte values the standard gives (request `/?!CR LF`,
# identification `/XXXZ\W<ident>CR LF` with `\2` announcing binary mode, acknowledgement
# `ACK V Z Y CR LF`), then real HDLC frames from Dennisonius/wireshark_dlms sample_serial.pcap.
REQUEST = b"/?!\r\n"
IDENTIFICATION = b"/XYZ5\\2METER-0001\r\n"
ACK_HDLC = bytes([0x06]) + b"252\r\n"
SNRM = bytes.fromhex("7ea0080221619363977e")
UA = bytes.fromhex("7ea01f61022173e1e2818012050180060180070400000001080400000001533b7e")


def _serial_capture(path: Path, records: list[tuple[bytes, int]]) -> None:
    """A link type 147 pcapng with direction flags, one record per line or frame, as
    `sniff serial -w` writes it (Scapy's pcapng writer, as the live capture uses)."""
    writer = RawPcapNgWriter(str(path))
    writer.linktype = 147
    writer.write_header(None)
    for i, (data, flag) in enumerate(records):
        pkt = Raw(data)
        pkt.direction = flag
        writer.write_packet(pkt, sec=1700000000 + i)
    writer.close()


def test_read_shows_the_sign_on_of_a_serial_capture(tmp_path: Path) -> None:
    """`read` of a serial capture with an IEC 62056-21 sign-on before HDLC shows the sign-on
    messages as records (as `sniff` does live), not as skipped noise."""
    cap = tmp_path / "sign-on.pcapng"
    # pcapng EPB flags: 2 outbound (client -> meter), 1 inbound (meter -> client)
    _serial_capture(cap, [(REQUEST, 2), (IDENTIFICATION, 1), (ACK_HDLC, 2), (SNRM, 2),
                          (UA, 1)])
    out = io.StringIO()
    assert main(["read", str(cap), "--json"], out) == 0
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    records = [r for r in rows if "apdu" in r]
    assert [r["apdu"] for r in records] == ["mode-e-sign-on", "mode-e-identification",
                                            "mode-e-acknowledge", "hdlc-snrm", "hdlc-ua"]
    assert [r["direction"] for r in records] == ["client->server", "server->client",
                                                 "client->server", "client->server",
                                                 "server->client"]
    codes = [f["code"] for r in rows for f in r["expert"]]
    assert not [c for c in codes if c.endswith("skipped-bytes")], codes
