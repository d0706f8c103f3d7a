"""Expert findings attached to packets during dissection (no I/O: the dissector reports them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scapy.packet import Packet

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One expert finding, Wireshark style: a stable code, a severity and a message.

    Findings about the input rather than a packet (a TCP gap, skipped bytes) also say where:
    the capture frame (`frame`, 0 when none), its time, the link ("" for the capture as a
    whole) and the direction of the stream. `about_record` is the form that rides on a record:
    the frame named in the message, the location dropped.
    """

    severity: Severity
    code: str
    message: str
    frame: int = 0
    time: float = 0.0
    link: str = ""
    direction: str = "unknown"

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "message": self.message}

    def line(self) -> str:
        """`severity: code: message`, as the text outputs and the export's comments say it."""
        return f"{self.severity}: {self.code}: {self.message}"

    def about_record(self) -> Finding:
        """This finding as it is attached to a record: `frame N: message`."""
        if not self.frame and not self.link:
            return self
        return Finding(self.severity, self.code, f"frame {self.frame}: {self.message}")


def add_finding(pkt: Packet, severity: Severity, code: str, message: str) -> None:
    """Attach a finding to a packet (kept in the `findings` attribute, not a wire field)."""
    found = pkt.__dict__.setdefault("findings", [])
    found.append(Finding(severity, code, message))


def own_findings(pkt: Packet) -> list[Finding]:
    """The findings attached to this packet itself (not to the packets it holds)."""
    return list(pkt.__dict__.get("findings", ()))


def findings_of(pkt: Packet | None) -> list[Finding]:
    """All findings of a packet tree (fields, payloads, deciphered plaintext), outermost first."""
    from .tree import iter_tree

    return [f for p in iter_tree(pkt) for f in p.__dict__.get("findings", ())]
