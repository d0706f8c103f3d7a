"""From records to output: the redaction step, the display filter and the formats, then the
writer that numbers and prints them.

A record is rendered without its number (`Rendered`): the writer puts the number in front as it
prints, so the parent of `read --jobs`, which alone knows the capture-wide numbers, never edits
rendered text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from dissector.analysis.record import ApduRecord
from dissector.output.filter import compile_filter
from dissector.output.jsonout import encode, record_json
from dissector.output.pcap import PcapItem, pcap_item
from dissector.output.redact import withhold_keys
from dissector.output.text import finding_lines, summary_line, tree_lines
from layers.expert import Finding

MODES = ("summary", "tree", "json")


@dataclass(slots=True)
class Rendered:
    """A record's text without its number, and what the `-w` export takes of it."""

    body: str
    mode: str
    pcap: PcapItem | None = None

    def text(self, number: int) -> str:
        """The record's text, numbered."""
        if self.mode == "json":
            return f'{{"number": {number}, {self.body}'
        return f"{number:4d} {self.body}"


class Renderer:
    """Record -> `Rendered`, or None when the display filter drops it. Every record goes
    through the redaction step first."""

    def __init__(self, mode: str = "summary", display_filter: str | None = None,
                 export: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown output mode {mode!r}")
        self.mode = mode
        self.keep: Callable[[dict[str, Any]], bool] | None = \
            compile_filter(display_filter) if display_filter else None
        self.export = export

    def __call__(self, rec: ApduRecord) -> Rendered | None:
        withhold_keys(rec)
        mode = self.mode
        as_json = record_json(rec) if self.keep is not None or mode == "json" else None
        if self.keep is not None and not self.keep(as_json):  # type: ignore[arg-type]
            return None
        summary = None
        if mode == "json":
            assert as_json is not None
            del as_json["number"]
            body = encode(as_json)[1:] + "\n"
        elif mode == "tree":
            body = "\n".join(tree_lines(rec)) + "\n\n"
        else:
            summary = summary_line(rec)
            body = "\n".join([summary, *finding_lines(rec)]) + "\n"
        # the export reuses what was computed here (the summary line, the JSON object)
        return Rendered(body, mode, pcap_item(rec, summary, as_json) if self.export else None)


class Writer:
    """Prints numbered records and the end-of-input findings; flushes each record (live use)
    unless told not to (`read`: the stream's own buffering, as tshark -r without -l)."""

    def __init__(self, out: TextIO, mode: str = "summary", flush_each: bool = True) -> None:
        self.out = out
        self.mode = mode
        self.flush_each = flush_each

    def write(self, item: Rendered, number: int) -> None:
        self.write_text(item.text(number))

    def write_text(self, text: str) -> None:
        self.out.write(text)
        if self.flush_each:
            self.out.flush()

    def finding(self, f: Finding) -> None:
        """A finding about the input or a live source, on its own line (JSON: an event)."""
        if self.mode == "json":
            self.write_text(encode({
                "event": "finding", "frames": [f.frame] if f.frame else [], "time": f.time,
                "link": f.link or None, "direction": f.direction,
                "expert": [f.as_dict()]}) + "\n")
        else:
            self.write_text(f"{'-':>4} {f.time:17.6f} {f.direction:15s} {f.link or '-'}  "
                            f"{f.severity}: {f.code}: {f.message}\n")

    def end(self, findings: list[Finding]) -> None:
        """Findings about the input as a whole (what never completed), after the last APDU."""
        if not findings:
            return
        if self.mode == "json":
            self.out.write(encode({"end": True, "expert": [f.as_dict() for f in findings]})
                           + "\n")
        else:
            self.out.write("end of input:\n" + "\n".join(
                f"       {f.severity}: {f.code}: {f.message}" for f in findings) + "\n")
        self.out.flush()
