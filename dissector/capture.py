"""`read`: a capture file through the framer, the reassembler and the dissector."""

from __future__ import annotations

import json
from collections.abc import Iterator

from layers.expert import Finding

from .model import ApduRecord
from .pipeline import Dissector, Unit
from .tracker import describe_state


def dissect_capture(path: str, dis: Dissector,
                    ports: dict[int, str] | None = None) -> Iterator[ApduRecord]:
    """Stream the APDUs of a capture, in capture order; nothing is accumulated."""
    from .records import LinkEvent, Note
    from .stream import iter_pdus

    notes: list[Finding] = []
    for item in iter_pdus(path, ports):
        if isinstance(item, LinkEvent):
            if item.kind == "close":
                dis.close(item.link)
            continue
        if isinstance(item, Note):
            notes.append(Finding(item.severity, item.code,
                                 f"frame {item.frame_no}: {item.message}"))
            continue
        unit = Unit(item.data, item.transport, list(item.frames), item.time, item.link,
                    item.direction, notes)
        notes = []
        yield from dis.feed(unit)


def stats_text(dis: Dissector) -> str:
    """--stats: one JSON object per association."""
    lines = ["", "== associations =="]
    for st in dis.tracker.associations.values():
        lines.append(json.dumps(describe_state(st), indent=1))
    return "\n".join(lines) + "\n"
