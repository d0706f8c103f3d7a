"""One reassembled APDU as the analysis gives it to the writers: its dissection, security verdict,
findings and what the tracker learned of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from scapy.packet import Packet

from layers.expert import Finding, findings_of, own_findings
from layers.hdlc import HDLC
from layers.security import (
    sc_authenticated,
    sc_broadcast,
    sc_compressed,
    sc_encrypted,
    sc_suite,
)
from layers.tree import tree_nodes


@dataclass
class ApduRecord:
    """A reassembled APDU with its dissection, security verdict and findings."""

    number: int
    frames: list[int]
    time: float
    link: str
    direction: str
    packet: Packet
    transport: str = "raw"
    frame_packets: list[Packet] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    response_time: float | None = None
    name: str | None = None
    request_frame: int | None = None  # first frame of the request this record answers
    hls_pass: int | None = None  # 3 or 4 when the record carries an HLS pass

    @property
    def apdu(self) -> str:
        """Green Book name of the APDU; `hdlc-snrm`, `hdlc-rr`, ... for frames without one."""
        name = self.name or getattr(self.packet, "apdu_name", None)
        if name:
            return name
        if isinstance(self.packet, HDLC):
            return "hdlc-" + self.packet.kind.lower()
        return "unknown"

    @cached_property
    def envelope(self) -> Any:
        """The outermost ciphered envelope of the APDU (or of its user-information), if any."""
        envelopes = [p for p in self.nodes if getattr(type(p), "decipher", None) is not None]
        return next((p for p in envelopes if p.ciphered is not None),
                    envelopes[0] if envelopes else None)

    @cached_property
    def signing(self) -> Any:
        """The general-signing envelope around the APDU, if any."""
        return next((p for p in self.nodes if getattr(type(p), "family", "") == "signing"),
                    None)

    @cached_property
    def nodes(self) -> list[Packet]:
        """Every packet of the APDU's tree (deciphered plaintext included), walked once."""
        return tree_nodes(self.packet)

    @cached_property
    def _layer_findings(self) -> list[Finding]:
        out: list[Finding] = []
        for frame in self.frame_packets:
            out.extend(f for f in findings_of(frame) if f not in out)
        out.extend(f for p in self.nodes for f in own_findings(p))
        return out

    def all_findings(self) -> list[Finding]:
        """Findings of the frames, the APDU tree and the tracker, outermost first."""
        return self._layer_findings + self.findings

    def security(self) -> dict[str, Any] | None:
        """The `security` object of the JSON contract (computed once: the record is final)."""
        return self._security

    @cached_property
    def _security(self) -> dict[str, Any] | None:
        env = self.envelope
        if env is None:
            return None
        sc = env.security_control
        res = env.deciphered
        title = res.system_title if res is not None else env.carried_title()
        signing = self.signing
        signed = signing.deciphered if signing is not None else None
        return {
            "envelope": env.apdu_name,
            "signature_verified": signed.tag_verified if signed is not None else None,
            "control": sc,
            "suite": sc_suite(sc) if sc is not None else None,
            "authenticated": sc_authenticated(sc) if sc is not None else None,
            "encrypted": sc_encrypted(sc) if sc is not None else None,
            "broadcast": sc_broadcast(sc) if sc is not None else None,
            "compressed": sc_compressed(sc) if sc is not None else None,
            "invocation_counter": env.invocation_counter,
            "system_title": title.hex().upper() if title else None,
            "key_kind": (res.key_kind if res is not None else None) or env.implied_key_kind(),
            "key_name": res.key_name if res is not None else None,
            "tag_verified": res.tag_verified if res is not None else None,
        }

    def plaintext(self) -> bytes | None:
        env = self.envelope
        res = env.deciphered if env is not None else None
        return res.plaintext if res is not None else None

    def inner(self) -> Packet | None:
        env = self.envelope
        res = env.deciphered if env is not None else None
        return res.packet if res is not None else None
