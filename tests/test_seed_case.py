"""The seed case (../shared/corpus/seed-case.md): four public HDLC frames, decoded without keys."""

from __future__ import annotations

import io
import json
import re

import pytest
from conftest import corpus_path
from scapy.compat import raw

from dissector.cli.main import main
from layers.hdlc import HDLC


@pytest.fixture(scope="module")
def seed_frames() -> list[str]:
    text = corpus_path("seed-case.md").read_text()
    lines = re.findall(r"^[CS]->[CS]\s+((?:[0-9A-F]{2} ?)+)$", text, re.MULTILINE)
    assert len(lines) == 4
    return [line.replace(" ", "") for line in lines]


def run(argv: list[str]) -> str:
    out = io.StringIO()
    assert main(argv, out) == 0
    return out.getvalue()


def test_frames_round_trip_with_valid_check_sequences(seed_frames: list[str]) -> None:
    for hexa in seed_frames:
        b = bytes.fromhex(hexa)
        frame = HDLC(b)
        assert raw(frame) == b
        assert frame.hcs_ok is True and frame.fcs_ok is True


def test_json_contract(seed_frames: list[str]) -> None:
    rows = [json.loads(line) for line in run(["decode", "--json", *seed_frames]).splitlines()]
    assert [r["apdu"] for r in rows] == ["aarq", "aare", "ded-action-request",
                                         "confirmed-service-error"]
    assert [r["direction"] for r in rows] == ["client->server", "server->client"] * 2
    assert all(r["link"] == "hdlc 48-1" for r in rows)
    sec = [r["security"] for r in rows]
    assert [s["control"] for s in sec[:3]] == [0x30, 0x30, 0x30]
    assert [s["invocation_counter"] for s in sec[:3]] == [0, 0x488, 3]
    assert [s["key_kind"] for s in sec[:3]] == ["global-unicast", "global-unicast", "dedicated"]
    assert all(s["tag_verified"] is None for s in sec[:3])
    assert sec[3] is None
    for r in rows:
        assert not [f for f in r["expert"] if f["severity"] == "error"
                    and f["code"].startswith(("malformed", "hdlc", "apdu"))], r["expert"]


def test_summary_says_it_in_words(seed_frames: list[str]) -> None:
    text = run(["decode", *seed_frames])
    assert "LN" in text and "ciphering" in text
    assert "4142434445464748" in text and "474F450000581CF1".lower() in text.lower()
    assert re.search(r"high.*manufacturer", text)
    assert "[ded, SC=30 auth+enc suite0, IC=3, key=dedicated" in text
    assert "write / application-reference / deciphering-error" in text
    assert "authentication-required" in text


def test_tree_shows_every_field(seed_frames: list[str]) -> None:
    text = run(["decode", "-V", *seed_frames])
    assert "bit 6 key set: unicast" in text
    assert "calling" in text.lower() and "mechanism" in text.lower()
