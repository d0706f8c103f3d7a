"""A record as the JSON object of the machine contract (DESIGN.md, `--json`)."""

from __future__ import annotations

import json
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


def encode(obj: dict[str, Any]) -> str:
    """One JSON line, without its newline."""
    return ENCODER.encode(obj)
