"""The `read` pipeline fed one item at a time by a live source: each record is written and
flushed as soon as it is complete; findings about the live machinery itself (a lost port, a
refused connection) are printed at once, findings about the bytes ride on the next record."""

from __future__ import annotations

from typing import TextIO

from dissector.analysis.capture import Riding
from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.output.flow import FlowWriter
from dissector.output.render import Renderer, Writer
from dissector.stages import Item
from layers.expert import Finding

#: Finding codes of the live machinery: printed at once, not attached to the next APDU.
LIVE_CODES = ("serial.", "tap.", "sniff.")


class LiveDissection:
    """Records as `read` prints them (summary, tree or JSON lines), each flushed at once."""

    def __init__(self, dissector: Dissector, out: TextIO, renderer: Renderer,
                 flow: FlowWriter | None = None, time_format: str = "e") -> None:
        self.dissector = dissector
        self.renderer = renderer
        self.flow = flow  # the flow page, written when the capture stops
        self.writer = Writer(out, renderer.mode, columns=renderer.columns,
                             time_format=time_format)
        self.count = 0
        self.riding = Riding()

    def process(self, item: Item) -> list[ApduRecord]:
        """One item of the framing stage; the records it completed."""
        if isinstance(item, Finding) and item.code.startswith(LIVE_CODES):
            self.writer.finding(item)
            return []
        taken = self.riding.take(item)
        if taken is None:
            return []
        records = list(self.dissector.process(taken))
        for rec in records:
            shown = self.renderer(rec)
            if shown is None:
                self.writer.skipped(rec.time)
            else:
                self.writer.write(shown, rec.number)
                self.count += 1
                if self.flow is not None and shown.flow is not None:
                    self.flow.add(shown.flow)
        return records

    def finish(self) -> None:
        self.writer.end([*self.riding.left(), *self.dissector.finish()])
        self.writer.close()
        if self.flow is not None:
            self.flow.close()
