"""Every unencrypted HDLC, wrapper or raw-APDU item of the corpus manifest decodes through
`decode` with no error-severity finding, except where the source itself is malformed."""

from __future__ import annotations

import re

import pytest
from scapy.compat import raw

from dissector.analysis.pipeline import Dissector
from dissector.framing.lines import hex_units
from layers import APDU

#: Items whose bytes are really malformed, and the finding that says so.
MALFORMED = {"item024": "hdlc.bad-fcs"}  # the source dump has "0609" for "0906" in 3 places


def _plain_items(manifest: dict) -> list[dict]:
    return [it for it in manifest["items"] if not it["encrypted"] and it.get("hex")
            and re.match(r"(HDLC|raw APDU|DLMS/(TCP|UDP) wrapper)", it["transport"])]


def test_there_are_plain_items(manifest: dict) -> None:
    assert len(_plain_items(manifest)) >= 20


def test_every_plain_item_decodes_without_errors(manifest: dict) -> None:
    for item in _plain_items(manifest):
        dis = Dissector()
        records = [r for unit in hex_units([bytes.fromhex(item["hex"])])
                   for r in dis.process(unit)]
        assert records, item["id"]
        errors = {f.code for r in records for f in r.all_findings() if f.severity == "error"}
        errors |= {f.code for f in dis.finish() if f.severity == "error"}
        if item["id"] in MALFORMED:
            assert MALFORMED[item["id"]] in errors, item["id"]
            continue
        assert not errors, (item["id"], errors)
        apdus = [r for r in records if not r.apdu.startswith("hdlc-")]
        assert apdus[-1].apdu in ("data-notification", "aare", "get-response"), item["id"]


@pytest.mark.parametrize("item_id,count,first_obis", [("item026", 22, "0.0.96.1.1.255"),
                                                      ("item028", 27, "0.0.42.0.0.255")])
def test_vendor_push_with_untagged_descriptors(manifest: dict, item_id: str, count: int,
                                               first_obis: str) -> None:
    """Sagemcom XT211 / EGD pushes: counts and first OBIS as the third-party XML decode has them
    (expected/raw_sagecom_xt211_decoded.xml, expected/raw_egd_example_decoded.xml)."""
    item = next(i for i in manifest["items"] if i["id"] == item_id)
    b = bytes.fromhex(item["hex"])
    pkt = APDU(b)
    assert raw(pkt) == b
    body = pkt.notification_body
    assert len(body.values) == count
    from layers.obis import obis_str

    assert obis_str(body.values[0].cosem_attribute_descriptor.instance_id) == first_obis
