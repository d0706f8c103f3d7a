"""The flow page: one self-contained HTML file (inline SVG, CSS and JS; no fetch, system fonts).

Everything from a capture is escaped: HTML text and attributes through `html.escape`, the
per-association detail data as JSON inside `<script type="application/json">` with `<`, `>`
and `&` escaped, and the script fills the details panel with `textContent` only.

Each arrow is an SVG `<g class="arrow kk-KIND">` with `data-key-kind`, `data-apdu`,
`data-inner`, `data-ic`, `data-tag`, `data-n`, `data-dir`, `data-sender`, `data-severity` and,
on an answer, `data-answers` (the number of the request it answers); its line has the key
kind's colour as `stroke` (the legend shows the same colours, `KEY_KINDS`).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any, TextIO

from dissector.output.flow_assets import CSS, SCRIPT
from dissector.output.flow_model import Association, PageData, key_kind_of

#: key kind -> (colour, legend text). Stable: tests and users read them.
KEY_KINDS: dict[str, tuple[str, str]] = {
    "global-unicast": ("#0072B2", "global unicast key"),
    "global-broadcast": ("#009E73", "global broadcast key"),
    "dedicated": ("#D55E00", "dedicated key (learned from the AARQ)"),
    "agreed": ("#CC79A7", "agreed key (ECDH)"),
    "wrapped": ("#E69F00", "wrapped key (KEK)"),
    "unknown": ("#56B4E9", "ciphered, key kind unknown"),
    "none": ("#7F7F7F", "none (plaintext APDU)"),
}
SEVERITIES: dict[str, str] = {"error": "#C62828", "warning": "#F2A900", "note": "#5C7A99",
                              "chat": "#B0B0B0"}
TAGS: dict[str, tuple[str, str, str]] = {  # data-tag -> (glyph, colour, legend text)
    "ok": ("\u2713", "#2E7D32", "tag OK"),
    "failed": ("\u2717", "#C62828", "tag FAILED (dashed arrow)"),
    "unchecked": ("?", "#7F7F7F", "tag not checked (no key; dotted arrow)"),
    "no-tag": ("\u2205", "#7F7F7F", "no tag (encryption only)"),
}
OPEN_MAX = 4  # pages with this many associations or fewer show them open

W, LEFT, RIGHT, TOP, ROW = 720, 180, 610, 56, 46
MARKS = 3  # finding marks drawn per arrow (all of them are in the details panel)


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _json_script(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _title(hex_title: str | None) -> str:
    """A system title in hex, with its printable ASCII form (`4142... (ABCDEFGH)`, or the
    manufacturer's three letters: `474F45... (GOE...)`)."""
    if not hex_title:
        return "-"
    try:
        raw = bytes.fromhex(hex_title)
    except ValueError:
        return hex_title
    printable = [32 <= b < 127 for b in raw]
    if all(printable):
        return f"{hex_title} ({raw.decode('latin-1')})"
    if len(raw) > 3 and all(printable[:3]):
        return f"{hex_title} ({raw[:3].decode('latin-1')}...)"
    return hex_title


def tag_state(item: dict[str, Any]) -> str:
    """`ok`, `failed`, `unchecked`, `no-tag`, or `none` for a plaintext APDU."""
    sec = item.get("security")
    if sec is None:
        return "none"
    control = sec.get("control")
    if isinstance(control, int) and not control & 0x10:
        return "no-tag"
    return {True: "ok", False: "failed"}.get(sec.get("tag_verified"), "unchecked")


def _rank(severity: str) -> int:
    return list(SEVERITIES).index(severity) if severity in SEVERITIES else len(SEVERITIES)


def worst(findings: list[dict[str, Any]]) -> str:
    for sev in SEVERITIES:
        if any(f.get("severity") == sev for f in findings):
            return sev
    return ""


def label(item: dict[str, Any]) -> str:
    """`ded-action-request IC=3`, `confirmed-service-error 0.250 s` (answers; under 0.1 s in
    ms: `0.4 ms`)."""
    words = [str(item.get("apdu"))]
    sec = item.get("security") or {}
    if sec.get("invocation_counter") is not None:
        words.append(f"IC={sec['invocation_counter']}")
    seconds = item.get("response_time")
    if seconds is not None:
        words.append(f"{seconds:.3f} s" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms")
    return " ".join(words)


def _lanes(assoc: Association) -> tuple[str, str]:
    return ("head-end", "meter") if assoc.kind == "push" else ("client", "meter")


def _arrow(assoc: Association, row: int, item: dict[str, Any]) -> str:
    """One arrow: its row band, line, head, label, sub-label, marks and tag glyph."""
    kind = key_kind_of(item)
    colour = KEY_KINDS.get(kind, KEY_KINDS["unknown"])[0]
    tag = tag_state(item)
    findings = item.get("findings") or []
    sev = worst(findings)
    sec = item.get("security") or {}
    y = TOP + row * ROW + 26
    direction = item.get("direction")
    from_meter = direction == assoc.meter_direction
    x1, x2 = (RIGHT, LEFT) if from_meter else (LEFT, RIGHT)
    head = -10 if x2 > x1 else 10
    dash = {"failed": ' stroke-dasharray="8 4"', "unchecked": ' stroke-dasharray="2 3"'} \
        .get(tag, "")
    if direction not in ("client->server", "server->client"):
        dash = ' stroke-dasharray="12 3 2 3"'
    answers = item.get("answers")
    attrs = {
        "class": f"arrow kk-{kind} tag-{tag}" + (f" sev-{sev}" if sev else ""),
        "id": f"r{assoc.number}-{row}", "tabindex": "0", "data-row": row,
        "data-n": item.get("number"), "data-key-kind": kind, "data-apdu": item.get("apdu"),
        "data-inner": item.get("inner") or "", "data-tag": tag,
        "data-ic": "" if sec.get("invocation_counter") is None else sec["invocation_counter"],
        "data-dir": {"client->server": "c2s", "server->client": "s2c"}.get(direction, "unknown"),
        "data-sender": _lanes(assoc)[1 if from_meter else 0],
        "data-severity": sev, "data-frames": ",".join(map(str, item.get("frames") or [])),
    }
    if answers:
        attrs["data-answers"] = answers[1]
    out = ["<g " + " ".join(f'{k}="{_e(v)}"' for k, v in attrs.items()) + ">"]
    band = {"error": "#FDECEA", "warning": "#FFF6DD"}.get(sev, "transparent")
    out.append(f'<rect class="band" x="0" y="{y - 24}" width="{RIGHT + 56}" height="{ROW - 2}" '
               f'fill="{band}"/>')
    out.append(f'<text class="gut" x="8" y="{y - 4}">#{_e(item.get("number"))}</text>')
    out.append(f'<text class="gut t" x="8" y="{y + 12}">+{item["time"] - assoc.start:.3f} s'
               f'</text>')
    out.append(f'<line class="shaft" x1="{x1}" y1="{y}" x2="{x2 + head}" y2="{y}" '
               f'stroke="{colour}" stroke-width="2.5"{dash}/>')
    out.append(f'<path class="head" d="M{x2} {y} l{head} -6 v12 z" fill="{colour}"/>')
    mid = (LEFT + RIGHT) // 2
    out.append(f'<text class="label" x="{mid}" y="{y - 6}" text-anchor="middle">'
               f'{_e(label(item))}</text>')
    sub = [f"answers #{answers[1]}" if answers else "", item.get("inner") or "",
           sec.get("key_name") or ""]
    if item.get("nframes", 1) > 1:
        sub.append(f"{item['nframes']} frames")
    out.append(f'<text class="sub" x="{mid}" y="{y + 15}" text-anchor="middle">'
               f'{_e(" · ".join(s for s in sub if s))}</text>')
    if tag in TAGS:
        glyph, tcolour, words = TAGS[tag]
        gx = x2 + (14 if x2 > x1 else -14)
        out.append(f'<text class="verdict" x="{gx}" y="{y + 5}" text-anchor="middle" '
                   f'fill="{tcolour}"><title>{_e(words)}</title>{glyph}</text>')
    for i, f in enumerate(findings[:MARKS]):
        fsev = f.get("severity")
        cx = x1 + (-14 - 16 * i if x2 > x1 else 14 + 16 * i)
        out.append(f'<g class="mark sev-{_e(fsev)}" data-severity="{_e(fsev)}" '
                   f'data-code="{_e(f.get("code"))}"><title>{_e(fsev)}: {_e(f.get("code"))}: '
                   f'{_e(f.get("message"))}</title><circle cx="{cx}" cy="{y}" r="6" '
                   f'fill="{SEVERITIES.get(str(fsev), "#B0B0B0")}"/></g>')
    out.append("</g>")
    return "".join(out)


def _tie(row: int, item: dict[str, Any]) -> str:
    """The bracket from an answer back to its request, on the meter's side."""
    req_row, req_n = item["answers"]
    y1, y2 = TOP + row * ROW + 26, TOP + req_row * ROW + 26
    x = RIGHT + 78 + 8 * (row % 3)
    sev = worst(item.get("findings") or [])
    colour = SEVERITIES.get(sev, "#9E9E9E") if sev in ("error", "warning") else "#9E9E9E"
    return (f'<g class="tie" data-from="{_e(item.get("number"))}" data-to="{_e(req_n)}">'
            f'<path d="M{RIGHT + 66} {y1} H{x} V{y2} H{RIGHT + 70}" fill="none" '
            f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            f'<path d="M{RIGHT + 62} {y2} l8 -4 v8 z" fill="{colour}"/></g>')


def _ladder(out: TextIO, writer: PageData, assoc: Association) -> None:
    """The SVG of one association, then its details data for the script."""
    left, right = _lanes(assoc)
    height = TOP + max(assoc.drawn, 1) * ROW + 16
    out.write(f'<svg class="ladder" xmlns="http://www.w3.org/2000/svg" width="{W}" '
              f'height="{height}" viewBox="0 0 {W} {height}" role="img" '
              f'aria-label="flow of association {assoc.number}">')
    for x, name, title in ((LEFT, left, assoc.client_title), (RIGHT, right, assoc.server_title)):
        out.write(f'<g class="lane" data-lane="{_e(name)}"><rect x="{x - 100}" y="4" '
                  f'width="200" height="36" rx="4"/><text x="{x}" y="19" text-anchor="middle" '
                  f'class="lane-name">{_e(name)}</text><text x="{x}" y="33" '
                  f'text-anchor="middle" class="lane-title">{_e(_title(title))}</text>'
                  f'<line x1="{x}" y1="40" x2="{x}" y2="{height}" class="life"/></g>')
    details, ties, arrows = [], [], []
    for row, item in enumerate(writer.items(assoc)):
        arrows.append(_arrow(assoc, row, item))
        if item.get("answers"):
            ties.append(_tie(row, item))
        details.append({k: item.get(k) for k in ("number", "frames", "nframes", "time", "link",
                                                 "direction", "apdu", "inner", "security",
                                                 "response_time", "request_frame", "findings",
                                                 "nfindings", "summary", "fields")})
    out.write("".join(ties) + "".join(arrows) + "</svg>")
    if assoc.not_drawn:
        out.write(f'<p class="note cap">{assoc.not_drawn} more APDU(s) of this association are '
                  f'not drawn (cap: {writer.max_arrows} arrows per association, '
                  f'{writer.budget} per page).</p>')
    out.write(f'<script type="application/json" class="details" id="d{assoc.number}">'
              f'{_json_script(details)}</script>')


def _legend() -> str:
    kinds = "".join(
        f'<li data-key-kind="{k}" data-colour="{c}"><svg width="28" height="10"><line x1="0" '
        f'y1="5" x2="28" y2="5" stroke="{c}" stroke-width="3"/></svg> {_e(words)}</li>'
        for k, (c, words) in KEY_KINDS.items())
    tags = "".join(f'<li data-tag="{k}"><span class="glyph" style="color:{c}">{g}</span> '
                   f'{_e(w)}</li>'
                   for k, (g, c, w) in TAGS.items())
    sevs = "".join(f'<li data-severity="{s}"><svg width="12" height="12"><circle cx="6" '
                   f'cy="6" r="5" fill="{c}"/></svg> {s}</li>' for s, c in SEVERITIES.items())
    return ('<section id="legend"><ul><li class="head">Arrow colour = key that protected the '
            f'APDU:</li>{kinds}</ul><ul><li class="head">Tag:</li>{tags}</ul><ul><li '
            f'class="head">Findings (marks at the sender; row tinted on error or warning):</li>'
            f'{sevs}<li>· dashed bracket on the meter side: answer to request</li></ul>'
            '</section>')


def _chips(assoc: Association) -> str:
    return "".join(f'<span class="chip" data-key-kind="{_e(k)}" style="border-color:'
                   f'{KEY_KINDS.get(k, KEY_KINDS["unknown"])[0]}">{_e(k)} {n}</span>'
                   for k, n in sorted(assoc.kinds.items()))


def _issue(assoc: Association) -> str:
    f = assoc.first_issue
    if f is None:
        return "-"
    message = str(f.get("message"))
    short = message if len(message) <= 70 else message[:68] + "..."
    return (f'<a href="#n={_e(f.get("number"))}" class="sev-{_e(f.get("severity"))}" '
            f'title="{_e(message)}">#{_e(f.get("number"))} {_e(f.get("severity"))}: '
            f'{_e(f.get("code"))}</a><br><span class="msg">{_e(short)}</span>')


def _index(writer: PageData) -> str:
    rows = []
    for a in writer.associations:
        mech = a.mechanism or ("push session" if a.kind == "push" else
                               "no AARQ in the capture" if a.kind == "no-aarq" else
                               "lowest (no mechanism-name)")
        left, right = _lanes(a)
        result = f"<br>AARE {_e(a.result)}" if a.result else ""
        rows.append(f'<tr data-assoc="{a.number}"><td><a href="#a{a.number}">{a.number}</a></td>'
                    f'<td class="link">{_e(a.link)}</td><td class="titles">{_e(left)} '
                    f'{_e(_title(a.client_title))}<br>{_e(right)} {_e(_title(a.server_title))}'
                    f'</td><td>{_e(mech)}{result}</td><td class="num">{a.apdus}</td>'
                    f'<td class="keys">{_chips(a)}</td><td>{_issue(a)}</td></tr>')
    return ('<section id="index"><h2>Associations</h2><table><thead><tr><th>#</th><th>link'
            '</th><th>system titles</th><th>mechanism</th><th>APDUs</th>'
            '<th>keys</th><th>first warning or error</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></section>")


def _cap_note(writer: PageData) -> str:
    parts = []
    if writer.left_out_associations:
        parts.append(f"{writer.left_out_associations} more association(s) with "
                     f"{writer.left_out_apdus} APDU(s) are left out (cap: "
                     f"{writer.max_associations} associations per page)")
    not_drawn = sum(a.not_drawn for a in writer.associations)
    if not_drawn:
        parts.append(f"{not_drawn} APDU(s) of listed associations are counted but not drawn "
                     f"(cap: {writer.max_arrows} arrows per association, {writer.budget} per "
                     f"page)")
    frames = writer.stray_link_frames + sum(a.link_frames for a in writer.associations)
    if frames:
        parts.append(f"{frames} HDLC link frame(s) (SNRM, UA, RR, DISC, ...) are not drawn")
    if not parts:
        return ""
    return f'<p class="note" id="cap-note">{_e("; ".join(parts))}.</p>'


def write_page(out: TextIO, writer: PageData) -> None:
    """The whole page, association after association (only one in memory at a time)."""
    total = sum(a.apdus for a in writer.associations)
    title = f"DLMS association flow{': ' + writer.title if writer.title else ''}"
    out.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
              f'<meta name="viewport" content="width=device-width, initial-scale=1">'
              f'<title>{_e(title)}</title><style>{CSS}</style></head><body>'
              f'<main><header><h1>{_e(title)}</h1><p>{len(writer.associations)} '
              f'association(s), {total} APDU(s), {writer.drawn} drawn; hover or click an '
              f'arrow for its record. <button type="button" id="open-all">open all</button> '
              f'<button type="button" id="close-all">close all</button></p>'
              f'</header>')
    out.write(_cap_note(writer) + _legend() + _index(writer))
    opened = " open" if len(writer.associations) <= OPEN_MAX else ""
    for a in writer.associations:
        left, right = _lanes(a)
        issue = f' <span class="sev-{_e(a.first_issue["severity"])}">' \
                f'{_e(a.first_issue["severity"])}: {_e(a.first_issue["code"])}</span>' \
            if a.first_issue else ""
        counts = ", ".join(f"{n} {sev}{'s' if n > 1 else ''}" for sev, n in
                           sorted(a.severities.items(), key=lambda x: _rank(x[0])))
        out.write(f'<details class="assoc" id="a{a.number}" data-assoc="{a.number}" '
                  f'data-kind="{a.kind}"{opened}><summary>Association {a.number}: '
                  f'{_e(a.link)} · {_e(left)} {_e(_title(a.client_title))} / {_e(right)} '
                  f'{_e(_title(a.server_title))} · {_e(a.mechanism or a.kind)} · {a.apdus} '
                  f'APDU(s){issue}{" · " + _e(counts) if counts else ""}</summary>')
        _ladder(out, writer, a)
        out.write("</details>")
    if not writer.associations:
        out.write('<p class="note">No APDU in this capture.</p>')
    out.write('</main><aside id="panel" aria-live="polite"><p class="hint">Hover or click an '
              f'arrow to see its record.</p></aside><script>{SCRIPT}</script></body></html>\n')
