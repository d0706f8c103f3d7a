"""`read`: capture files through the sources, the framing and the analysis, as one stream."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dissector.analysis.fold import FindingFold
from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.framing.streams import pdus_from_records
from dissector.sources.capture import CaptureError, CaptureSource, read_capture
from dissector.stages import Item, LinkEvent, Pdu
from layers.expert import Finding


@dataclass(slots=True)
class Numbered:
    """A record as a writer takes it: its number in the capture and its rendering."""

    number: int
    item: Any  # None: the display filter dropped the record
    time: float = 0.0


@dataclass(slots=True)
class End:
    """After the last record: the end-of-input findings and the association summaries."""

    findings: list[Finding]
    summaries: list[dict]


def iter_pdus(path: CaptureSource | Sequence[CaptureSource], ports: dict[int, str] | None = None,
              count: int | None = None) -> Iterator[Item]:
    """The PDUs, link events and findings of a capture file (or of several files read as one),
    lazily, in capture order.

    Raises `CaptureError` at once when a file is not a readable capture.
    """
    return pdus_from_records(read_capture(path, ports, count))


class Riding:
    """Findings about the input wait for the next PDU and ride on it into its record (bounded:
    past its limit, `FindingFold` counts them per code)."""

    __slots__ = ("notes",)

    def __init__(self) -> None:
        self.notes = FindingFold()

    def take(self, item: Item) -> Pdu | LinkEvent | None:
        """The item as the analysis takes it, or None (a finding kept for the next PDU, a
        link that opened)."""
        if isinstance(item, Pdu):
            if self.notes:
                item.findings[:0] = self.left()
            return item
        if isinstance(item, LinkEvent):
            return item if item.kind == "close" else None
        if isinstance(item, Finding):
            self.notes.add(item)
        return None

    def left(self) -> list[Finding]:
        """The findings no PDU came after (as they ride on a record)."""
        return [f for _, f in self.notes.take()]


def units(items: Iterable[Item]) -> Iterator[Pdu | LinkEvent | Finding]:
    """What the analysis takes, in capture order: PDUs (the findings about the input met before
    each one ride on it), link closes, and the findings left after the last PDU."""
    riding = Riding()
    for item in items:
        taken = riding.take(item)
        if taken is not None:
            yield taken
    yield from riding.left()


def units_of_capture(path: str | list[str], ports: dict[int, str] | None = None,
                     count: int | None = None) -> Iterator[Pdu | LinkEvent | Finding]:
    """`units` of a capture (or of several files read as one). A capture none of whose
    records has a supported link type is a `CaptureError`."""
    unsupported: list[str] = []
    pdus = 0

    def watched() -> Iterator[Item]:
        for item in iter_pdus(path, ports, count):
            if isinstance(item, Finding) and item.code == "capture.unsupported-linktype":
                unsupported.append(item.message)
            yield item

    for item in units(watched()):
        pdus += isinstance(item, Pdu)
        yield item
    if not pdus and unsupported:
        label = path if isinstance(path, str) else ", ".join(path)
        raise CaptureError(f"{label}: {unsupported[0]}")


def dissect_capture(path: str | list[str], dis: Dissector,
                    ports: dict[int, str] | None = None) -> Iterator[ApduRecord]:
    """Stream the APDUs of a capture, in capture order; nothing is accumulated."""
    for position, item in enumerate(units_of_capture(path, ports)):
        dis.position = position
        yield from dis.process(item)


def stats_text(states: list[dict]) -> str:
    """--stats: one JSON object per association."""
    lines = ["", "== associations =="]
    lines.extend(json.dumps(st, indent=1) for st in states)
    return "\n".join(lines) + "\n"


def run_serial(dis: Dissector, items: Iterable[Pdu | LinkEvent | Finding],
               render: Callable[[ApduRecord], Any], position: bool = True
               ) -> Iterator[Numbered | End]:
    """The serial counterpart of `parallel.run_parallel`: records rendered and numbered in
    capture order, then the `End`."""
    for index, item in enumerate(items):
        if position:
            dis.position = index
        for rec in dis.process(item):
            yield Numbered(rec.number, render(rec), rec.time)
    yield End(dis.finish(), dis.tracker.summaries())
