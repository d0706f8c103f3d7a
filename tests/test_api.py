"""The Python API (`dissector.api.FileCapture`) and Scapy's own readers on a serial capture,
as a notebook uses them; facts from seed-case.md and the corpus."""

from __future__ import annotations

from pathlib import Path

from conftest import corpus_path
from scapy.utils import rdpcap

import layers
from dissector.api import FileCapture
from keys.keystore import load_keystore
from layers.apdu.acse import AARQ

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "pcaps" / "seed-case.pcap"
SEED_KEYS = ROOT / "pcaps" / "seed-case.keys.toml"


def test_records_of_the_seed_case() -> None:
    """seed-case.md: AARQ and AARE under the global key, HLS pass 3 (Association LN, class 15
    method 1) under the dedicated key, the meter's confirmed-service-error in clear."""
    recs = list(FileCapture(SEED, keys=SEED_KEYS))
    assert [(r.number, r.apdu) for r in recs] == [
        (1, "aarq"), (2, "aare"), (3, "ded-action-request"), (4, "confirmed-service-error")]
    assert [r.security and r.security["key_kind"] for r in recs] == [
        "global-unicast", "global-unicast", "dedicated", None]
    assert isinstance(recs[0].packet, AARQ)
    assert recs[0].packet.calling_ap_title == b"ABCDEFGH"
    assert type(recs[0].frame_packets[0]).__name__ == "HDLC"
    desc = recs[2].inner_packet.cosem_method_descriptor
    assert (desc.class_id, bytes(desc.instance_id), desc.method_id) == (
        15, bytes([0, 0, 40, 0, 0, 255]), 1)
    assert recs[3].json["expert"][0]["code"] == "assoc.error-response"


def test_a_keystore_object_a_filter_and_a_count() -> None:
    store = load_keystore(SEED_KEYS)
    kept = list(FileCapture(str(SEED), keys=store,
                            display_filter='security.key_kind == "dedicated"'))
    assert [r.frames for r in kept] == [[3]]
    assert [r.apdu for r in FileCapture(SEED, count=2)] == ["aarq", "aare"]
    capture = FileCapture(SEED, keys=store)
    list(capture)
    (assoc,) = capture.associations()
    assert assoc["server_system_title"] == "474F450000581CF1"


def test_rdpcap_of_a_serial_capture_gives_hdlc() -> None:
    """After `import layers`, Scapy's rdpcap reads link type 147 records as HDLC frames."""
    assert layers.SerialLine is not None
    capture = corpus_path("interop", "g3_hdlc_serial_pty_gmac", "capture.pcapng")
    packets = rdpcap(str(capture))
    assert packets and all(type(p).__name__ == "HDLC" for p in packets)
    assert all(p.fcs_verified for p in packets)
    assert packets[0].kind == "SNRM"
