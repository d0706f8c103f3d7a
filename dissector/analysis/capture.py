"""`read`: a capture file through the framer, the reassembler and the dissector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from dissector.analysis.pipeline import Dissector, Unit
from dissector.analysis.record import ApduRecord
from layers.expert import Finding


@dataclass(frozen=True)
class Close:
    """A link closed (TCP FIN/RST): its associations end."""

    link: str


def units_of_capture(path: str | list[str], ports: dict[int, str] | None = None
                     ) -> Iterator[Unit | Close | Trailing]:
    """Transport units of a capture (or of several files read as one) in capture order;
    capture notes ride on the next unit."""
    from dissector.framing.streams import iter_pdus
    from dissector.stages import LinkEvent, Note

    notes: list[Finding] = []
    units = 0
    unsupported = None
    for item in iter_pdus(path, ports):
        if isinstance(item, LinkEvent):
            if item.kind == "close":
                yield Close(item.link)
            continue
        if isinstance(item, Note):
            if item.code == "capture.unsupported-linktype":
                unsupported = item.message
            notes.append(Finding(item.severity, item.code,
                                 f"frame {item.frame_no}: {item.message}"))
            continue
        units += 1
        yield Unit(item.data, item.transport, list(item.frames), item.time, item.link,
                   item.direction, notes)
        notes = []
    if not units and unsupported:
        from dissector.sources.capture import CaptureError

        label = path if isinstance(path, str) else ", ".join(path)
        raise CaptureError(f"{label}: {unsupported}")
    if notes:
        yield Trailing(notes)


@dataclass(frozen=True)
class Trailing:
    """Findings about the capture after its last unit (gaps, noise, unsupported frames)."""

    findings: list[Finding]


def feed(dis: Dissector, item: Unit | Close | Trailing) -> Iterator[ApduRecord]:
    """One unit (or event) through a dissector."""
    if isinstance(item, Close):
        dis.close(item.link)
        return iter(())
    if isinstance(item, Trailing):
        dis.add_notes(item.findings)
        return iter(())
    return dis.feed(item)


def dissect_capture(path: str | list[str], dis: Dissector,
                    ports: dict[int, str] | None = None) -> Iterator[ApduRecord]:
    """Stream the APDUs of a capture, in capture order; nothing is accumulated."""
    for position, item in enumerate(units_of_capture(path, ports)):
        dis.position = position
        yield from feed(dis, item)


def stats_text(states: list[dict]) -> str:
    """--stats: one JSON object per association."""
    lines = ["", "== associations =="]
    lines.extend(json.dumps(st, indent=1) for st in states)
    return "\n".join(lines) + "\n"


def association_stats(dis: Dissector) -> list[dict]:
    return dis.tracker.summaries()
