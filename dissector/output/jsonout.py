"""A record as the JSON object of the machine contract (DESIGN.md, `--json`)."""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _string
from typing import Any

from dissector.analysis.record import ApduRecord
from dissector.output.fields import packet_fields
from layers.expert import Finding


def record_json(rec: ApduRecord) -> dict[str, Any]:
    """The record's JSON object; "number" first."""
    plain = rec.plaintext()
    fast = rec.fast
    return {
        "number": rec.number,
        "frames": rec.frames,
        "time": rec.time,
        "link": rec.link,
        "direction": rec.direction,
        "transport": rec.transport,
        "apdu": rec.apdu,
        "security": rec.security(),
        "plaintext": plain.hex().upper() if plain is not None else None,
        "inner": rec.inner_name(),
        "response_time": rec.response_time,
        "fields": fast.json_fields() if fast is not None else packet_fields(rec.packet),
        "expert": [f.as_dict() for f in rec.all_findings()],
    }


def record_text(rec: ApduRecord, as_json: dict[str, Any] | None = None, head: str = "",
                plain: Any = ...) -> str:
    """`encode(record_json(rec))` without its opening `{"number": N, ` (what follows the number
    in a `read --json` line), after `head` (the export's mark and summary: one text made, not
    two): made without the dicts for a fast record, whose fields come as text
    (`FastView.fields_text`); else from `as_json` when the caller has it. `plain` is
    `rec.plaintext()` when the caller has it."""
    fast = rec.fast
    if fast is None:
        obj = dict(as_json) if as_json is not None else record_json(rec)
        del obj["number"]
        return head + encode(obj)[1:]
    fields = fast.fields_text()
    if plain is ...:
        plain = rec.plaintext()
    inner = fast.inner_name
    findings = rec.all_findings()
    frames = rec.frames
    kind = (rec.direction, rec.transport, rec.apdu)
    said = _KIND.get(kind)
    if said is None:
        said = remembered(_KIND, kind, "".join((
            ', "direction": ', _name(kind[0]), ', "transport": ', _name(kind[1]),
            ', "apdu": ', _name(kind[2]), ', "security": ')))
    link, time, answered = rec.link, rec.time, rec.response_time
    return "".join((
        head, '"frames": [', str(frames[0]) if len(frames) == 1 else ", ".join(map(str, frames)),
        # a finite float as the encoder writes it, without a call (`_scalar` else)
        '], "time": ', repr(time) if time - time == 0 else _scalar(time),
        ', "link": ', _NAMES.get(link) or _name(link), said,
        _security_text(rec.security()),
        ', "plaintext": ', "null" if plain is None else f'"{plain.hex().upper()}"',
        ', "inner": ', "null" if inner is None else _name(inner),
        ', "response_time": ', "null" if answered is None else repr(answered)
        if answered - answered == 0 else _scalar(answered),
        ', "fields": ', fields,
        ', "expert": ', findings_text(findings) if findings else "[]", "}"))


def findings_text(findings: list[Finding]) -> str:
    """`encode([f.as_dict() for f in findings])`."""
    return "[" + ", ".join(
        f'{{"severity": {_name(f.severity)}, "code": {_name(f.code)}, '
        f'"message": {string_text(f.message)}}}' for f in findings) + "]"


def _security_text(sec: dict[str, Any] | None) -> str:
    """`encode(sec)` for a record's `security` object (`ApduRecord.security`: its members in
    that order; tests/test_fastpath.py compares the record's text with the encoder's)."""
    if sec is None:
        return "null"
    control = sec["control"]
    head = (sec["envelope"], sec["signature_verified"], control)
    said = _HEADS.get(head)
    if said is None:  # the envelope and what its security control byte says (the suite and
        # the flags follow from the byte)
        said = remembered(_HEADS, head, "".join((
            '{"envelope": ', _scalar(head[0]), ', "signature_verified": ', _scalar(head[1]),
            ', "control": ', _scalar(control), ', "suite": ', _scalar(sec["suite"]),
            ', "authenticated": ', _truth(sec["authenticated"]),
            ', "encrypted": ', _truth(sec["encrypted"]),
            ', "broadcast": ', _truth(sec["broadcast"]),
            ', "compressed": ', _truth(sec["compressed"]), ', "invocation_counter": ')))
    tail = (sec["key_kind"], sec["key_name"], sec["tag_verified"])
    key = _KEYS.get(tail)
    if key is None:  # the key and the verdict
        key = remembered(_KEYS, tail, "".join((
            ', "key_kind": ', _scalar(tail[0]), ', "key_name": ', _scalar(tail[1]),
            ', "tag_verified": ', _truth(tail[2]), "}")))
    ic, title = sec["invocation_counter"], sec["system_title"]
    return "".join((said, str(ic) if type(ic) is int else _scalar(ic), ', "system_title": ',
                    _name(title) if type(title) is str else _scalar(title), key))


#: JSON texts of what repeats from record to record, by the values they are made of (bounded
#: caches): the record's direction, transport and APDU; the security object's envelope and
#: control byte; its key and verdict.
_KIND: dict[tuple[Any, ...], str] = {}
_HEADS: dict[tuple[Any, ...], str] = {}
_KEYS: dict[tuple[Any, ...], str] = {}


def remembered(cache: dict[Any, str], key: Any, text: str) -> str:
    """`text`, kept in `cache` under `key` (a cache of texts that repeat: at most 4,096
    entries, emptied when full)."""
    if len(cache) >= 4096:
        cache.clear()
    cache[key] = text
    return text


#: JSON strings of the texts records repeat (links, names), made once (bounded).
_NAMES: dict[str, str] = {}


def _name(text: str) -> str:
    """The JSON string of a text that repeats from record to record."""
    got = _NAMES.get(text)
    return got if got is not None else remembered(_NAMES, text, _string(text))


#: The characters a JSON string holds as they are (printable ASCII but `"` and `\\`).
_AS_IS = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


def string_text(text: str) -> str:
    """A text as the encoder writes it (a JSON string, ASCII only): at a third of the
    encoder's cost when it holds nothing to escape, as a summary line does."""
    if text.isascii() and not text.encode().translate(None, _AS_IS):
        return f'"{text}"'
    return _string(text)


def _truth(value: Any) -> str:
    """A bool (or anything else) as the encoder writes it."""
    return "true" if value is True else "false" if value is False else _scalar(value)


def _scalar(value: Any) -> str:
    """A JSON scalar as the encoder writes it (anything else through the encoder)."""
    kind = type(value)
    if kind is float:  # first: the record's times (x - x is NaN for an infinity or NaN)
        return repr(value) if value - value == 0.0 else encode(value)
    if kind is str:
        return _string(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    return encode(value)


def finding_event(f: Finding) -> dict[str, Any]:
    """A finding on its own (about the input or a live source), as a JSON line says it."""
    return {"event": "finding", "frames": [f.frame] if f.frame else [], "time": f.time,
            "link": f.link or None, "direction": f.direction, "expert": [f.as_dict()]}


def end_event(findings: list[Finding]) -> dict[str, Any]:
    """The end-of-input findings (what never completed), as the last JSON line says them."""
    return {"end": True, "expert": [f.as_dict() for f in findings]}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex().upper()
    return str(obj)


# as json.dumps(..., default=_json_default), without the check for circular references (a
# record's JSON is a tree built afresh)
ENCODER = json.JSONEncoder(default=_json_default, check_circular=False)


def encode(obj: Any) -> str:
    """One JSON line, without its newline."""
    return ENCODER.encode(obj)
