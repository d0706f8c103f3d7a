"""`--flow OUT.html`: the association flow diagram (one ladder per association, arrows coloured
by the key that protected each APDU).

Two steps, so that `read --jobs N` can run the first in its workers, as it does `-w`'s
`pcap_item`: `flow_item(rec)` makes a small plain dict of what the page shows of one record
(key bytes redacted, texts bounded), and `FlowWriter` takes those dicts in capture order,
groups them into associations and writes the page at `close()`.

Associations: the records of one link; a new one opens at each AARQ. Records of a link seen
before any AARQ form an association "without AARQ", or a push session when the first is a
data-notification (plain or the inner APDU of a ciphered one); in a push session the meter is
the side that sent it. HDLC link frames (SNRM, UA, RR, DISC, ...) are counted, not drawn.

Memory stays flat: the dicts of drawn arrows are spooled to a temporary file as JSON lines
(only their offsets stay in memory) and the page is assembled at `close()`, one association
at a time. Caps (all noted in the page when they bite): `MAX_ASSOCIATIONS` associations,
`MAX_ARROWS` arrows per association and `ARROW_BUDGET` arrows per page; what is over a cap
is counted, not drawn.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from dissector.analysis.record import ApduRecord
from dissector.output.flow_model import Association, key_kind_of
from dissector.output.jsonout import record_json
from dissector.output.text import summary_line
from layers.apdu.acse_fields import MECHANISM_OID, MECHANISMS, dlms_id

MAX_ASSOCIATIONS = 1000  # associations listed and drawn in one page
MAX_ARROWS = 1000  # arrows drawn per association
ARROW_BUDGET = 5000  # arrows drawn per page, over all associations
MAX_DROPPED_LINKS = 10000  # links remembered as left out (to count their associations once)
FIELDS_CHARS = 2000  # decoded-field excerpt shown in the details panel
TEXT_CHARS = 600  # summary lines and finding messages
MAX_FINDINGS = 8  # findings kept per record
MAX_FRAMES = 8  # frame numbers kept per record

SECURITY_KEYS = ("key_kind", "key_name", "tag_verified", "control", "invocation_counter",
                 "system_title", "envelope")


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... ({len(text) - limit} more characters not shown)"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex().upper()
    return str(obj)


def _field_lines(value: Any, depth: int = 0, key: str | None = None) -> Iterator[str]:
    pad = "  " * depth
    if isinstance(value, dict) and set(value) == {"value", "name"}:
        name, raw = str(value["name"]), str(value["value"])
        value = name if raw in name else f"{name} ({raw})"
    if isinstance(value, (dict, list)) and value:
        if key is not None:
            yield f"{pad}{key}:"
            depth += 1
            pad += "  "
        if isinstance(value, dict):
            if "layer" in value:
                yield f"{pad}[{value['layer']}]"
            for k, v in value.items():
                if k != "layer":
                    yield from _field_lines(v, depth, k)
        else:
            for v in value:
                yield from _field_lines(v, depth)
        return
    text = _json_default(value) if isinstance(value, (bytes, bytearray)) else str(value)
    yield f"{pad}{key}: {text}" if key is not None else pad + text


def fields_text(fields: Any, limit: int = FIELDS_CHARS) -> str:
    """The decoded tree as indented `name: value` lines, whole lines up to about `limit`
    characters (a `{value, name}` pair is one word; `[layer]` heads its block)."""
    out: list[str] = []
    size = 0
    for line in _field_lines(fields):
        out.append(line)
        size += len(line) + 1
        if size > limit:
            break
    return "\n".join(out)


def _acse(apdu: str, fields: dict[str, Any]) -> dict[str, Any] | None:
    """Titles, mechanism and result of an AARQ/AARE, from its decoded `fields`."""
    if apdu not in ("aarq", "aare") or not isinstance(fields, dict):
        return None
    out: dict[str, Any] = {}
    for comp in fields.get("components") or []:
        if not isinstance(comp, dict):
            continue
        layer = comp.get("layer")
        if layer in ("calling-AP-title", "responding-AP-title") and comp.get("title"):
            out["client_title" if layer == "calling-AP-title" else "server_title"] = \
                str(comp["title"])
        elif layer == "mechanism-name" and isinstance(comp.get("oid"), str):
            try:
                mech = dlms_id(bytes.fromhex(comp["oid"]), MECHANISM_OID)
            except ValueError:
                mech = None
            out["mechanism"] = (f"{MECHANISMS.get(mech, 'unknown')} ({mech})"
                                if mech is not None else f"OID {comp['oid']}")
        elif layer == "result" and isinstance(comp.get("result"), dict):
            out["result"] = str(comp["result"].get("name"))
        elif layer == "result-source-diagnostic" and isinstance(comp.get("value"), dict):
            out["diagnostic"] = str(comp["value"].get("name"))
    return out


def flow_item(rec: ApduRecord, as_json: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the flow page shows of one record: a plain dict (picklable, JSON-able), texts
    bounded. The record has been through the redaction step (`output.render.Renderer` calls
    this after it). `as_json`: `record_json(rec)` when the caller has it already."""
    data = as_json if as_json is not None else record_json(rec)
    clean = _bounded
    sec = data["security"]
    findings = data["expert"]
    frames = list(data["frames"])
    line = summary_line(rec)
    return {
        "number": rec.number,
        "frames": frames[:MAX_FRAMES // 2] + frames[-(MAX_FRAMES // 2):]
        if len(frames) > MAX_FRAMES else frames,
        "nframes": len(frames),
        "time": data["time"],
        "link": data["link"],
        "direction": data["direction"],
        "apdu": data["apdu"],
        "inner": data["inner"],
        "security": {k: sec.get(k) for k in SECURITY_KEYS} if sec is not None else None,
        "response_time": rec.response_time,
        "request_frame": rec.request_frame,
        "findings": [{"severity": str(f.get("severity")), "code": str(f.get("code")),
                      "message": clean(str(f.get("message")), TEXT_CHARS)}
                     for f in findings[:MAX_FINDINGS]],
        "nfindings": len(findings),
        "summary": clean(line, TEXT_CHARS),
        "fields": clean(fields_text(data["fields"]), FIELDS_CHARS),  # whole lines, then cut
        "acse": _acse(data["apdu"], data["fields"]),
    }


PageLimits = tuple[int, int, int]


class FlowWriter:
    """Consumes `flow_item` dicts in capture order; `close()` writes the page to `path`."""

    def __init__(self, path: str, title: str = "",
                 limits: PageLimits = (MAX_ASSOCIATIONS, MAX_ARROWS, ARROW_BUDGET)) -> None:
        self.path = path
        self.title = title
        self.max_associations, self.max_arrows, self.budget = limits
        self.spool: BinaryIO = tempfile.TemporaryFile()  # closed in close()
        self.associations: list[Association] = []
        self.current: dict[str, Association] = {}  # link -> its open association
        self.dropped_links: set[str] = set()
        self.left_out_associations = 0
        self.left_out_apdus = 0
        self.stray_link_frames = 0
        self.drawn = 0
        self.closed = False

    def add(self, item: dict[str, Any]) -> None:
        """Take the next record's dict (capture order)."""
        link, apdu = str(item.get("link")), str(item.get("apdu"))
        assoc = self.current.get(link)
        if apdu.startswith("hdlc-"):
            if assoc is not None:
                assoc.link_frames += 1
            else:
                self.stray_link_frames += 1
            return
        if apdu == "aarq" or (assoc is None and link not in self.dropped_links):
            if assoc is not None:
                assoc.requests = None  # its answers are over
            assoc = self._open(link, item)
        if assoc is None:
            self.left_out_apdus += 1
            return
        self._take(assoc, item)

    def _open(self, link: str, item: dict[str, Any]) -> Association | None:
        self.current.pop(link, None)
        if len(self.associations) >= self.max_associations:
            self.left_out_associations += 1
            if len(self.dropped_links) < MAX_DROPPED_LINKS:
                self.dropped_links.add(link)
            return None
        self.dropped_links.discard(link)
        apdu = item.get("apdu")
        push = "data-notification" in (apdu, item.get("inner"))
        kind = "aarq" if apdu == "aarq" else "push" if push else "no-aarq"
        assoc = Association(len(self.associations) + 1, link, kind, float(item["time"]))
        if push:  # a meter that connects to the head-end sends "client->server" on TCP
            assoc.meter_direction = str(item.get("direction"))
        self.associations.append(assoc)
        self.current[link] = assoc
        return assoc

    def _take(self, assoc: Association, item: dict[str, Any]) -> None:
        assoc.apdus += 1
        kind = key_kind_of(item)
        assoc.kinds[kind] = assoc.kinds.get(kind, 0) + 1
        for f in item.get("findings") or []:
            sev = f.get("severity")
            assoc.severities[sev] = assoc.severities.get(sev, 0) + 1
            if assoc.first_issue is None and sev in ("error", "warning"):
                assoc.first_issue = {**f, "number": item.get("number")}
        self._titles(assoc, item)
        if assoc.drawn >= self.max_arrows or self.drawn >= self.budget:
            assoc.not_drawn += 1
            return
        row = assoc.drawn
        request = item.get("request_frame")
        if assoc.requests is not None:
            if request is not None and request in assoc.requests:
                item = {**item, "answers": assoc.requests[request]}
            if item.get("frames"):
                assoc.requests[item["frames"][0]] = (row, item.get("number"))
        text = json.dumps(item, default=_json_default).encode() + b"\n"
        assoc.offsets.extend((self.spool.tell(), len(text)))
        self.spool.write(text)
        self.drawn += 1

    @staticmethod
    def _titles(assoc: Association, item: dict[str, Any]) -> None:
        acse = item.get("acse") or {}
        if item.get("apdu") == "aarq":
            assoc.client_title = acse.get("client_title") or assoc.client_title
            assoc.mechanism = acse.get("mechanism") or assoc.mechanism
        elif item.get("apdu") == "aare":
            assoc.server_title = acse.get("server_title") or assoc.server_title
            assoc.mechanism = assoc.mechanism or acse.get("mechanism")
            assoc.result = acse.get("result")
        elif assoc.kind == "push" and assoc.server_title is None:
            sec = item.get("security") or {}
            assoc.server_title = sec.get("system_title")

    def items(self, assoc: Association) -> Iterator[dict[str, Any]]:
        """The spooled dicts of an association's drawn arrows, in order."""
        offsets = assoc.offsets
        for i in range(0, len(offsets), 2):
            self.spool.seek(offsets[i])
            yield json.loads(self.spool.read(offsets[i + 1]))

    def close(self) -> None:
        """Write the page (once) and drop the spool."""
        if self.closed:
            return
        self.closed = True
        from dissector.output.flow_page import write_page

        try:
            with open(self.path, "w", encoding="utf-8") as out:
                write_page(out, self)
        finally:
            self.spool.close()
