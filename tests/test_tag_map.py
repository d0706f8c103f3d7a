"""Every tag of the notes' tag map (§3.1 and the glo-/ded- table of §4.1) has a class."""

from __future__ import annotations

import re

from conftest import SHARED

from layers.apdu import APDU_CLASSES, UnknownAPDU

NOTES = SHARED / "docs" / "dlms-protocol-notes.md"


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start))]


def notes_tags() -> set[int]:
    text = NOTES.read_text()
    tags: set[int] = set()
    tag_map = _section(text, "### 3.1", "### 3.2")
    for row in tag_map.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        for i in (0, 3):
            if len(cells) > i and re.fullmatch(r"[0-9A-F]{2}", cells[i]):
                tags.add(int(cells[i], 16))
            if len(cells) > i and re.fullmatch(r"[0-9A-F]{2}/[0-9A-F]{2}", cells[i]):
                tags.update(int(x, 16) for x in cells[i].split("/"))
    ciphered = _section(text, "### 4.1", "### 4.2")
    for row in ciphered.splitlines():
        tags.update(int(x, 16) for x in re.findall(r"\| (?:glo-\w+ )?([0-9A-F]{2}) \(\d+\)", row))
        tags.update(int(x, 16) for x in re.findall(r"\b([0-9A-F]{2}) \(\d+\)", row))
    return tags


def test_notes_list_the_whole_tag_map() -> None:
    tags = notes_tags()
    assert {0x60, 0x61, 0xC0, 0xDB, 0xDF, 0xE0, 0x21, 0xD3, 0x4E}.issubset(tags)
    assert len(tags) >= 60


def test_every_tag_has_a_class() -> None:
    missing = sorted(t for t in notes_tags() if t not in APDU_CLASSES)
    assert not missing, [hex(t) for t in missing]
    for tag in notes_tags():
        assert APDU_CLASSES[tag] is not UnknownAPDU
