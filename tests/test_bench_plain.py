"""A plain head-end capture of the benchmark (`bench/generate.py --plain`) read without keys.

The facts come from the generator's PDU list (every wrapper PDU / HDLC frame it wrote, in
capture order, with its frame number, direction and outer tag), not from our earlier output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import generate  # noqa: E402

#: Green Book names (lower-kebab) of the tags a plain capture carries.
GREEN_BOOK = {
    0x0F: "data-notification", 0x60: "aarq", 0x61: "aare", 0x62: "rlrq", 0x63: "rlre",
    0xC0: "get-request", 0xC1: "set-request", 0xC3: "action-request",
    0xC4: "get-response", 0xC5: "set-response", 0xC7: "action-response",
}


def test_plain_capture_read_without_keys(tmp_path: Path) -> None:
    man = generate.generate(300, tmp_path, plain=True)
    files = man["files"]
    assert man["name"] == "plain-300" and Path(files[".pcap"]).exists()
    pdus = list(generate.read_pdus(files[".pdus"]))
    apdus = [p for p in pdus if p[5]]
    assert len(apdus) == 300 and {p[3] for p in pdus} == {generate.KIND_NONE}
    # nothing ciphered: no glo-/ded-/general-glo tag among the outer ones
    assert {p[5] for p in apdus} <= set(GREEN_BOOK)
    assert {p[5] for p in apdus} >= {0x60, 0x61, 0x62, 0x63, 0xC0, 0xC4}

    res = subprocess.run([sys.executable, "-m", "dissector", "read", files[".pcap"],
                          *man["ours_args"], "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    records = [json.loads(line) for line in res.stdout.splitlines()]
    ours = [r for r in records if not r["apdu"].startswith("hdlc-")]
    links = [r for r in records if r["apdu"].startswith("hdlc-")]

    want = [(GREEN_BOOK[outer], frame, "client->server" if direction == 0 else "server->client")
            for _sid, frame, direction, _kind, _inner, outer, _data in apdus]
    got = [(r["apdu"], max(r["frames"]), r["direction"]) for r in ours]
    assert got == want
    assert len(links) == len(pdus) - len(apdus)  # SNRM, UA, DISC, UA of the HDLC meters
    assert all(r["security"] is None for r in records)
    bad = [(r["number"], e) for r in records for e in r["expert"]
           if e["severity"] in ("error", "warning")]
    assert bad == []
