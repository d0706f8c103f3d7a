"""From records to output: the redaction step, the display filter and the formats, then the
writer that numbers and prints them.

A record is rendered without its number (`Rendered`): the writer puts the number in front as it
prints, so the parent of `read --jobs`, which alone knows the capture-wide numbers, never edits
rendered text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from dissector.analysis.record import ApduRecord
from dissector.output.columns import Columns
from dissector.output.filter import compile_filter
from dissector.output.flow import flow_item
from dissector.output.jsonout import (
    encode,
    end_event,
    finding_event,
    record_json,
    record_text,
)
from dissector.output.pcap import Later, PcapItem, pcap_item
from dissector.output.redact import withhold_keys
from dissector.output.text import (
    dump_lines,
    finding_lines,
    summary_info,
    summary_line,
    tree_lines,
)
from layers.expert import Finding

MODES = ("summary", "tree", "json", "json-array", "fields")


@dataclass(slots=True)
class Rendered:
    """A record's text without its number, and what the `-w` export takes of it."""

    body: str
    mode: str
    pcap: PcapItem | Later | None = None
    cells: list[str | None] | None = None  # -T fields: the values, None where the number goes
    columns: Columns | None = None
    flow: dict[str, Any] | None = None  # --flow: what the flow page takes of the record
    time: float = 0.0  # the record's capture time

    def __reduce__(self) -> tuple[type[Rendered], tuple[Any, ...]]:
        # pickled as its fields in order (`read --jobs` workers send every record back)
        return Rendered, (self.body, self.mode, self.pcap, self.cells, self.columns, self.flow,
                          self.time)

    def text(self, number: int, stamp: str | None = None) -> str:
        """The record's text, numbered (and, in text modes, stamped: `stamp` is its time as
        the writer's `-t` format gives it; the epoch seconds by default)."""
        if self.mode in ("json", "json-array"):
            return f'{{"number": {number}, {self.body}'
        if self.columns is not None and self.cells is not None:
            return self.columns.line(self.cells, number)
        return f"{number:4d} {stamp or f'{self.time:17.6f}'} {self.body}"


#: `-t` formats, as tshark's: absolute local time (and date), delta from the previous record
#: (and from the previous one shown), epoch seconds, relative to the first record, UTC.
TIME_FORMATS = ("a", "ad", "d", "dd", "e", "r", "u", "ud")


class TimeStamps:
    """Record times in one `-t` format; deltas need the records before (shown or not)."""

    __slots__ = ("first", "form", "previous", "shown")

    def __init__(self, form: str = "e") -> None:
        if form not in TIME_FORMATS:
            raise ValueError(f"-t {form!r}: one of {' '.join(TIME_FORMATS)}")
        self.form = form
        self.first: float | None = None
        self.previous: float | None = None
        self.shown: float | None = None

    def seen(self, time: float) -> None:
        """A record the display filter dropped: deltas count from it (`-t d`)."""
        if self.first is None:
            self.first = time
        self.previous = time

    def stamp(self, time: float) -> str:
        """The time of a record that is shown."""
        first = self.first if self.first is not None else time
        form = self.form
        if form == "e":
            text = f"{time:17.6f}"
        elif form in ("r", "d", "dd"):
            base = {"r": first, "d": self.previous, "dd": self.shown}[form]
            text = f"{time - (base if base is not None else time):17.6f}"
        else:
            utc = form.startswith("u")
            moment = datetime.fromtimestamp(time, UTC if utc else None)
            text = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if form.endswith("d")
                                   else "%H:%M:%S.%f")
        self.seen(time)
        self.shown = time
        return text


class Renderer:
    """Record -> `Rendered`, or None when the display filter drops it. Every record goes
    through the redaction step first."""

    def __init__(self, mode: str = "summary", display_filter: str | None = None,
                 export: bool = False, columns: Columns | None = None,
                 flow: bool = False, colour: bool = False, dump: bool = False,
                 later: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown output mode {mode!r}")
        if (mode == "fields") != (columns is not None):
            raise ValueError("the fields mode goes with its columns (-T fields -e FIELD)")
        self.mode = mode
        self.columns = columns
        self.flow = flow
        self.colour = colour  # severities in ANSI colours (text modes on a terminal)
        self.dump = dump  # -x: hex dumps after each record (text modes)
        self.keep: Callable[[dict[str, Any]], bool] | None = \
            compile_filter(display_filter) if display_filter else None
        self.export = export
        # the export's packets made by the writer in batches (`pcap.Later`), not here: a serial
        # run (a worker process makes them whole, to send them)
        self.later = later

    def __call__(self, rec: ApduRecord) -> Rendered | None:
        withhold_keys(rec)
        mode = self.mode
        as_json = record_json(rec) if self.keep is not None or self.flow or \
            mode == "fields" else None
        if self.keep is not None and not self.keep(as_json):  # type: ignore[arg-type]
            return None
        flow = flow_item(rec, dict(as_json)) if self.flow and as_json is not None else None
        if self.columns is not None:
            return Rendered("", mode, self.export_item(rec, None, as_json) if self.export
                            else None, self.columns.cells(as_json), self.columns, flow)
        info = encoded = line = None
        if mode in ("json", "json-array"):
            encoded = record_text(rec, as_json)
            body = encoded + "\n" if mode == "json" else encoded
        elif mode == "tree":
            body = "\n".join(tree_lines(rec, self.colour)) + "\n\n"
        else:
            info = summary_info(rec)
            line = summary_line(rec, info)
            body = "\n".join([line, *finding_lines(rec, self.colour)]) + "\n"
        if self.dump and mode in ("summary", "tree"):
            body += "\n".join(dump_lines(rec)) + "\n"
        # the export reuses what was made here (the Info text, the summary line, the JSON
        # object and its text)
        return Rendered(body, mode, self.export_item(rec, info, as_json, encoded, line)
                        if self.export else None, flow=flow, time=rec.time)

    def export_item(self, rec: ApduRecord, info: str | None, as_json: dict[str, Any] | None,
                    body: str | None = None, line: str | None = None
                    ) -> PcapItem | Later:
        """The record's export packet (`-w`), or what makes it later."""
        if self.later:
            return Later(rec, info, as_json, body, line)
        return pcap_item(rec, info, as_json, body, line)


def mode_has_time(mode: str) -> bool:
    return mode in ("summary", "tree")


class Writer:
    """Prints numbered records and the end-of-input findings; flushes each record (live use)
    unless told not to (`read`: the stream's own buffering, as tshark -r without -l)."""

    def __init__(self, out: TextIO, mode: str = "summary", flush_each: bool = True,
                 columns: Columns | None = None, time_format: str = "e") -> None:
        self.out = out
        self.mode = mode
        self.flush_each = flush_each
        self.written = 0
        self.times = TimeStamps(time_format)
        if columns is not None and columns.header:
            self.write_text(columns.header_line())

    def skipped(self, time: float) -> None:
        """A record the display filter dropped (deltas still count from it)."""
        self.times.seen(time)

    def write(self, item: Rendered, number: int) -> None:
        text = item.text(number, self.times.stamp(item.time)
                         if mode_has_time(self.mode) else None)
        if self.mode == "json-array":  # tshark -T json: one array, one record per element
            text = ("[\n  " if not self.written else ",\n  ") + text
        self.written += 1
        self.write_text(text)

    def close(self) -> None:
        """After the last record (and the end-of-input findings)."""
        if self.mode == "json-array":
            self.write_text("[\n]\n" if not self.written else "\n]\n")

    def write_text(self, text: str) -> None:
        self.out.write(text)
        if self.flush_each:
            self.out.flush()

    def finding(self, f: Finding) -> None:
        """A finding about the input or a live source, on its own line (JSON: an event)."""
        if self.mode == "json":
            self.write_text(encode(finding_event(f)) + "\n")
        else:
            self.write_text(f"{'-':>4} {f.time:17.6f} {f.direction:15s} {f.link or '-'}  "
                            f"{f.line()}\n")

    def end(self, findings: list[Finding]) -> None:
        """Findings about the input as a whole (what never completed), after the last APDU."""
        if not findings or self.mode == "fields":
            return
        if self.mode == "json-array":
            obj = encode(end_event(findings))
            self.write_text(("[\n  " if not self.written else ",\n  ") + obj)
            self.written += 1
            return
        if self.mode == "json":
            self.out.write(encode(end_event(findings)) + "\n")
        else:
            self.out.write("end of input:\n" + "\n".join(
                f"       {f.line()}" for f in findings) + "\n")
        self.out.flush()
