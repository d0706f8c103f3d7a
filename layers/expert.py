"""Expert findings attached to packets during dissection (no I/O: the dissector reports them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scapy.packet import Packet

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Finding:
    """One expert finding, Wireshark style: a stable code, a severity and a message."""

    severity: Severity
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "message": self.message}


def add_finding(pkt: Packet, severity: Severity, code: str, message: str) -> None:
    """Attach a finding to a packet (kept in the `findings` attribute, not a wire field)."""
    found = pkt.__dict__.setdefault("findings", [])
    found.append(Finding(severity, code, message))


def findings_of(pkt: Packet | None) -> list[Finding]:
    """All findings of a packet, its packet fields and its payloads, outermost first."""
    out: list[Finding] = []
    seen: set[int] = set()

    def walk(p: Packet | None) -> None:
        while p is not None and not _is_none(p) and id(p) not in seen:
            seen.add(id(p))
            out.extend(p.__dict__.get("findings", ()))
            for fld in p.packetfields:
                val = p.getfieldval(fld.name)
                for sub in val if isinstance(val, list) else [val]:
                    if isinstance(sub, Packet):
                        walk(sub)
            inner = p.__dict__.get("deciphered")
            if inner is not None and getattr(inner, "packet", None) is not None:
                walk(inner.packet)
            p = p.payload

    walk(pkt)
    return out


def _is_none(p: Packet) -> bool:
    from scapy.packet import NoPayload

    return isinstance(p, NoPayload)
