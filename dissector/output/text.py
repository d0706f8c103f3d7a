"""Writers: one summary line per APDU (default), the full tree (-V), JSON lines (--json)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from scapy.packet import Packet

from dissector.analysis.record import ApduRecord
from layers.security import describe_sc, explain_sc

FAMILY_WORDS = {"glo": "glo", "ded": "ded", "general": "general", "signing": "signed"}


def security_annotation(rec: ApduRecord) -> str:
    """`[ded, SC=30 auth+enc suite0, IC=3, key=dedicated, tag OK]`, or '' for plaintext."""
    sec = rec.security()
    if sec is None:
        return ""
    env = rec.envelope
    parts = [FAMILY_WORDS.get(getattr(env, "family", ""), env.apdu_name)]
    if sec["control"] is not None:
        parts.append(describe_sc(sec["control"]))
    if sec["invocation_counter"] is not None:
        parts.append(f"IC={sec['invocation_counter']}")
    kind = sec["key_kind"] or "unknown"
    name = sec["key_name"]
    parts.append(f"key={kind}" + (f" ({name})" if name else ""))
    verdict = {True: "tag OK", False: "tag FAILED", None: "tag not checked"}[sec["tag_verified"]]
    if sec["control"] is not None and not sec["control"] & 0x10:
        verdict = "no tag"
    parts.append(verdict)
    return "[" + ", ".join(parts) + "]"


def _info(pkt: Packet) -> str:
    try:
        text = pkt.mysummary()
    except Exception:  # noqa: BLE001 - a summary never stops output
        text = ""
    return text if isinstance(text, str) else str(text)


def summary_line(rec: ApduRecord) -> str:
    frames = ",".join(str(f) for f in rec.frames) or "-"
    info = _info(rec.packet)
    inner = rec.inner()
    if inner is not None:
        info += f" -> {_info(inner)}"
    if rec.response_time is not None and "request_frame" in rec.__dict__:
        info += f" (answers frame {rec.__dict__['request_frame']}, {rec.response_time:.3f}s)"
    sec = security_annotation(rec)
    head = f"{rec.number:4d} {rec.time:17.6f} {rec.direction:15s} {rec.link}  [{frames}]  " \
           f"{rec.apdu}  {info}"
    return head + (f"  {sec}" if sec else "")


def finding_lines(rec: ApduRecord) -> list[str]:
    return [f"       {f.severity}: {f.code}: {f.message}" for f in rec.all_findings()]


def tree_lines(rec: ApduRecord) -> list[str]:
    out = [summary_line(rec)]
    for frame in rec.frame_packets:
        out.extend(_indent(frame.show(dump=True)))
    out.extend(_indent(rec.packet.show(dump=True)))
    env = rec.envelope
    if env is not None and env.security_control is not None:
        out.append("    security control:")
        out.extend(f"      {line}" for line in explain_sc(env.security_control))
    res = env.deciphered if env is not None else None
    if res is not None and res.packet is not None:
        sec = rec.security() or {}
        out.append(f"    deciphered with key={sec.get('key_kind')} ({res.key_name}),"
                   f" tag_verified={res.tag_verified}:")
        out.extend(_indent(res.packet.show(dump=True), 6))
    out.extend(finding_lines(rec))
    return out


def _indent(text: str | None, n: int = 4) -> list[str]:
    return [" " * n + line for line in (text or "").splitlines() if line.strip()]


def render(rec: ApduRecord, mode: str, as_json: dict[str, Any] | None = None) -> str:
    """A record as text in one of the three formats, newline-terminated, key bytes redacted."""
    if mode == "json":
        text = _ENCODER.encode(as_json or rec.to_json()) + "\n"
    elif mode == "tree":
        text = "\n".join(tree_lines(rec)) + "\n\n"
    else:
        text = "\n".join([summary_line(rec), *finding_lines(rec)]) + "\n"
    for secret in rec.secrets():
        text = redact(text, secret)
    return text


def redact(text: str, secret: bytes) -> str:
    """Replace a key's hex (either case) and its bytes repr by a name and fingerprint."""
    import hashlib

    mark = f"<dedicated key {len(secret)} bytes sha256:{hashlib.sha256(secret).hexdigest()[:8]}>"
    for form in (secret.hex(), secret.hex().upper(), repr(secret)[2:-1]):
        text = text.replace(form, mark)
    return text


class Writer:
    """Prints records in one of the three formats, flushing each one (live use) unless told
    not to (`read`: the stream's own buffering, as tshark -r without -l)."""

    def __init__(self, out: TextIO, mode: str = "summary", flush_each: bool = True) -> None:
        self.out = out
        self.mode = mode
        self.flush_each = flush_each

    def write(self, rec: ApduRecord) -> None:
        self.write_text(render(rec, self.mode))

    def write_text(self, text: str) -> None:
        self.out.write(text)
        if self.flush_each:
            self.out.flush()


    def end(self, findings: list) -> None:
        """Findings about the input as a whole (what never completed), after the last APDU."""
        if not findings:
            return
        if self.mode == "json":
            self.out.write(json.dumps({"end": True, "expert": [f.as_dict() for f in findings]})
                           + "\n")
        else:
            self.out.write("end of input:\n" + "\n".join(
                f"       {f.severity}: {f.code}: {f.message}" for f in findings) + "\n")
        self.out.flush()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).hex().upper()
    return str(obj)


# as json.dumps(..., default=_json_default), without the check for circular references (a
# record's JSON is a tree built afresh)
_ENCODER = json.JSONEncoder(default=_json_default, check_circular=False)
