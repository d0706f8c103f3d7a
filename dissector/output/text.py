"""Records as text: the summary line (default) and the full tree (-V), without the record number
(the writer puts it in front: `render.Rendered`)."""

from __future__ import annotations

from typing import Any

from dissector.analysis.record import ApduRecord
from dissector.output.jsonout import remembered
from dissector.output.tree import packet_lines
from layers.security import describe_sc, explain_sc

FAMILY_WORDS = {"glo": "glo", "ded": "ded", "general": "general", "signing": "signed"}
#: The tag verdict in words (`security.tag_verified`).
VERDICTS = {True: "tag OK", False: "tag FAILED", None: "tag not checked"}


def security_annotation(rec: ApduRecord) -> str:
    """`[ded, SC=30 auth+enc suite0, IC=3, key=dedicated, tag OK]`, or '' for plaintext."""
    sec = rec.security()
    if sec is None:
        return ""
    env = rec.envelope
    control = sec["control"]
    head = (env.apdu_name, control)  # the envelope's family and the control byte in words
    said = _HEADS.get(head)
    if said is None:
        family = FAMILY_WORDS.get(getattr(env, "family", ""), env.apdu_name)
        said = remembered(_HEADS, head, family if control is None
                          else f"{family}, {describe_sc(control)}")
    tail = (sec["key_kind"], sec["key_name"], sec["tag_verified"],
            control is not None and not control & 0x10)
    key = _KEYS.get(tail)
    if key is None:  # the key and the verdict (no tag when the byte says not authenticated)
        kind, name, verified, untagged = tail
        key = remembered(_KEYS, tail, f", key={kind or 'unknown'}"
                         f"{f' ({name})' if name else ''}, "
                         f"{'no tag' if untagged else VERDICTS[verified]}]")
    ic = sec["invocation_counter"]
    return f"[{said}{key}" if ic is None else f"[{said}, IC={ic}{key}"


#: The annotation's texts by what they are made of (bounded caches): the envelope and its
#: control byte; the key and the verdict.
_HEADS: dict[tuple[Any, ...], str] = {}
_KEYS: dict[tuple[Any, ...], str] = {}


def summary_info(rec: ApduRecord) -> str:
    """The summary line after direction, link and frames: the APDU, what it says and its
    security (Wireshark's Info column)."""
    info = rec.info()
    if rec.response_time is not None:
        info += f" (answers frame {rec.request_frame}, {rec.response_time:.3f}s)"
    sec = security_annotation(rec)
    return f"{rec.apdu}  {info}  {sec}" if sec else f"{rec.apdu}  {info}"


def summary_line(rec: ApduRecord, info: str | None = None) -> str:
    """The summary line after its record number and time (the writer puts those in front);
    `info` is `summary_info(rec)` when the caller has it."""
    frames = ",".join(map(str, rec.frames)) or "-"
    if info is None:
        info = summary_info(rec)
    return f"{rec.direction:15s} {rec.link}  [{frames}]  {info}"


#: ANSI colours of the severities, as Wireshark colours its expert infos (error red, warning
#: yellow, note cyan, chat blue).
SEVERITY_COLOURS = {"error": "\x1b[1;31m", "warning": "\x1b[33m", "note": "\x1b[36m",
                    "chat": "\x1b[34m"}
RESET = "\x1b[0m"


def finding_lines(rec: ApduRecord, colour: bool = False) -> list[str]:
    # `Finding.line`, its severity coloured when asked
    return [f"       {_severity(f.severity, colour)}{f.line()[len(f.severity):]}"
            for f in rec.all_findings()]


def _severity(severity: str, colour: bool) -> str:
    return f"{SEVERITY_COLOURS.get(severity, '')}{severity}{RESET}" if colour else severity


def tree_lines(rec: ApduRecord, colour: bool = False) -> list[str]:
    """`-V`: the summary line, the frames and the APDU field by field (the deciphered APDU
    under its envelope), the security control byte bit by bit, the findings."""
    out = [summary_line(rec)]
    for frame in rec.frame_packets:
        out.extend(packet_lines(frame))
    out.extend(packet_lines(rec.packet))
    env = rec.envelope
    if env is not None and env.security_control is not None:
        out.append("    security control:")
        out.extend(f"      {line}" for line in explain_sc(env.security_control))
    out.extend(finding_lines(rec, colour))
    return out


def hex_dump(data: bytes) -> list[str]:
    """Bytes as tshark -x shows them: offset, 16 bytes in hex, the printable ones as text."""
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at:at + 16]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{at:04x}  {' '.join(f'{b:02x}' for b in chunk):<47}   {text}")
    return lines


def dump_lines(rec: ApduRecord) -> list[str]:
    """`-x`: the bytes the capture frames carried (the whole frames where the record has them,
    else the APDU) and, for a deciphered APDU, the plaintext (keys withheld)."""
    frames = [bytes(p.original) for p in rec.frame_packets if getattr(p, "original", None)]
    wire = frames or [bytes(rec.packet.original or b"")]
    out: list[str] = []
    for data in wire:
        out.extend(hex_dump(data))
        out.append("")
    plain = rec.plaintext()
    if plain is not None:
        out.append("deciphered APDU:")
        out.extend(hex_dump(plain))
        out.append("")
    return out
