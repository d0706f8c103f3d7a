"""Every third-party capture of the corpus is read to the end; error findings only where the
capture really is malformed (the deliberately altered Circutor files, a bad FCS in the
bearxiong99 sample, Gurux's short RLRE length) or where the meter itself answers with an error."""

from __future__ import annotations

import io
import json

import pytest
from conftest import CORPUS

from dissector.cli.main import main

CAPTURES = sorted(p.name for p in CORPUS.glob("*.pcap*")) if CORPUS.is_dir() else []
#: Error codes that report the traffic itself, not a dissection failure.
TRAFFIC_ERRORS = {"assoc.error-response", "assoc.rejected"}
#: Captures with real malformations, and the codes that say so.
MALFORMED = {
    "Circutor_dlms-analysis_data1.pcapng": {"hdlc.bad-fcs"},
    "Circutor_dlms-analysis_data2.pcapng": {"acse.bad-length"},
    "Circutor_dlms-analysis_data7.pcapng": {"hdlc.bad-flag", "hdlc.bad-fcs"},
    "bearxiong99_sample.pcap": {"hdlc.bad-fcs"},
}
GURUX_RLRE = {"acse.bad-length"}  # GuruxDLMS writes the RLRE user-information length one short


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_reads_with_only_real_errors(name: str) -> None:
    out = io.StringIO()
    assert main(["read", str(CORPUS / name), "--json"], out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    codes = {f["code"] for r in rows for f in r["expert"] if f["severity"] == "error"}
    unexpected = codes - TRAFFIC_ERRORS - MALFORMED.get(name, set())
    if name.startswith("htanwar922"):
        unexpected -= GURUX_RLRE
    assert not unexpected, unexpected
    if name in MALFORMED:
        assert MALFORMED[name] <= codes, codes
    if "PRIME" in name:
        # PRIME MAC frames over UDP 7919 are not decoded: nothing is taken for DLMS.
        assert all(r.get("end") for r in rows)
    else:
        assert any(r.get("apdu") for r in rows)
