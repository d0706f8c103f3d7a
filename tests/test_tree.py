"""`-V` in the project's own words (as Wireshark's packet details): bytes in hex with their
length, enumerations by name and value, the deciphered APDU under its envelope, the security
control byte bit by bit; facts from seed-case.md."""

from __future__ import annotations

import io
from pathlib import Path

from dissector.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SEED = ["read", str(ROOT / "pcaps" / "seed-case.pcap"), "--keys",
        str(ROOT / "pcaps" / "seed-case.keys.toml"), "-V"]


def _tree() -> str:
    out = io.StringIO()
    assert main(SEED, out) == 0
    return out.getvalue()


def test_tree_reads_as_packet_details() -> None:
    text = _tree()
    assert "b'" not in text and 'b"' not in text  # no Python bytes literals
    # seed-case.md: calling-AP-title ABCDEFGH, the meter's title 474F450000581CF1
    assert "title: 41 42 43 44 45 46 47 48 (8 bytes)" in text
    assert "title: 47 4f 45 00 00 58 1c f1 (8 bytes)" in text
    # the AARQ's initiate-request under its glo- envelope, its dedicated key withheld
    assert "deciphered with global-unicast key seed-meter/ek, tag OK:" in text
    assert "dedicated_key: " + " ".join(["00"] * 16) + " (16 bytes)" in text
    # pass 3 under the dedicated key; the error answer: write / application-reference /
    # deciphering-error (6), enumerations by name and value
    assert "deciphered with dedicated key AARQ frame 1, tag OK:" in text
    assert "deciphering-error (6)" in text
    assert "bit 5 encryption: applied" in text and "bits 3-0 security suite: 0" in text
