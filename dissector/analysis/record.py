"""One reassembled APDU as the analysis gives it to the writers: its dissection, security verdict,
findings and what the tracker learned of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scapy.packet import Packet

from dissector.analysis.fastpath import FastView
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


class computed_once:
    """`functools.cached_property` without its lock (Python 3.11 takes one on each first
    access, per record and property); a record is used by one thread at a time."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func
        self.name = func.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


@dataclass
class ApduRecord:
    """A reassembled APDU with its dissection, security verdict and findings.

    A record of the fast path (`fast`) has no Packets until something asks for `packet` or
    `frame_packets`; the facts the tracker and the writers read come from either form.
    """

    number: int
    frames: list[int]
    time: float
    link: str
    direction: str
    built: Packet | None  # the dissection (None until asked, on the fast path)
    transport: str = "raw"
    # the link frames' dissection, or what builds it when asked
    built_frames: list[Packet] | Callable[[], list[Packet]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    response_time: float | None = None
    name: str | None = None
    request_frame: int | None = None  # first frame of the request this record answers
    hls_pass: int | None = None  # 3 or 4 when the record carries an HLS pass
    fast: FastView | None = None

    @property
    def packet(self) -> Packet:
        """The APDU's Packet dissection (built on first use for a fast record)."""
        built = self.built
        if built is None:
            assert self.fast is not None
            built = self.built = self.fast.build()
        return built

    @property
    def frame_packets(self) -> list[Packet]:
        """The link frames' Packet dissection (wrapper, HDLC), built on first use."""
        frames = self.built_frames
        if callable(frames):
            frames = self.built_frames = frames()
        return frames

    @computed_once
    def apdu(self) -> str:
        """Green Book name of the APDU; `hdlc-snrm`, `hdlc-rr`, ... for frames without one
        (computed once: the record is final)."""
        if self.name:
            return self.name
        if self.fast is not None:
            return self.fast.name
        name = getattr(self.packet, "apdu_name", None)
        if name:
            return name
        if isinstance(self.packet, HDLC):
            return "hdlc-" + self.packet.kind.lower()
        return "unknown"

    @property
    def link_message(self) -> bool:
        """A link-layer message with no APDU: an HDLC frame of its own (SNRM, UA, RR, DISC,
        DM, FRMR), an M-Bus ACK or short frame, a mode E sign-on line."""
        return self.transport == "link" or (
            self.transport == "hdlc" and self.apdu.startswith("hdlc-"))

    @property
    def envelope(self) -> Any:
        """The outermost ciphered envelope of the APDU (or of its user-information), if any
        (a fast record's is its `layers.fastenvelope.FastEnvelope`)."""
        return self.fast.envelope if self.fast is not None else self._tree_envelope

    @computed_once
    def _tree_envelope(self) -> Any:
        envelopes = [p for p in self.nodes if getattr(type(p), "decipher", None) is not None]
        return next((p for p in envelopes if p.ciphered is not None),
                    envelopes[0] if envelopes else None)

    @computed_once
    def signing(self) -> Any:
        """The general-signing envelope around the APDU, if any."""
        if self.fast is not None:
            return None
        return next((p for p in self.nodes if getattr(type(p), "family", "") == "signing"),
                    None)

    @computed_once
    def nodes(self) -> list[Packet]:
        """Every packet of the APDU's tree (deciphered plaintext included), walked once."""
        return tree_nodes(self.packet)

    @computed_once
    def _layer_findings(self) -> list[Finding]:
        out: list[Finding] = []
        frames = self.built_frames  # frames not built yet are frames without findings
        for frame in frames if not callable(frames) else ():
            out.extend(f for f in findings_of(frame) if f not in out)
        if self.fast is not None:  # only the envelope of a fast record has findings
            out.extend(self.fast.findings())
            return out
        out.extend(f for p in self.nodes for f in own_findings(p))
        return out

    def all_findings(self) -> list[Finding]:
        """Findings of the frames, the APDU tree and the tracker, outermost first."""
        return self._layer_findings + self.findings

    def security(self) -> dict[str, Any] | None:
        """The `security` object of the JSON contract (computed once: the record is final)."""
        return self._security

    @computed_once
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
        """The deciphered APDU's Packet dissection, if any."""
        if self.fast is not None and self.fast.inner_name is None:
            return None
        env = self._tree_envelope
        res = env.deciphered if env is not None else None
        return res.packet if res is not None else None

    def inner_name(self) -> str | None:
        """The Green Book name of the deciphered APDU, if any."""
        if self.fast is not None:
            return self.fast.inner_name
        return getattr(self.inner(), "apdu_name", None)

    def info(self) -> str:
        """The summary line's text: the APDU's summary (and the deciphered APDU's)."""
        if self.fast is not None:
            return self.fast.info()
        info = _info(self.packet)
        inner = self.inner()
        if inner is not None:
            info += f" -> {_info(inner)}"
        return info

    def effective(self) -> Packet:
        """The APDU that means something: the deciphered inner APDU of an envelope, else
        the APDU (as Packets)."""
        inner = self.inner()
        if inner is not None and self._tree_envelope is self.packet:
            return inner
        return self.packet

    def acse(self) -> Any:
        """The ACSE APDU (AARQ, AARE, RLRQ, RLRE) with its titles, mechanism, result, ...:
        a fast record's `layers.fastacse.FastAcse`, else the Packet."""
        fast = self.fast
        return fast.acse if fast is not None and fast.acse is not None else self.packet

    @property
    def tree_envelope(self) -> Any:
        """The envelope as a Packet of the APDU's tree (built for a fast record)."""
        return self._tree_envelope

    def meaning(self) -> str:
        """The name of the APDU that means something (the deciphered one, else the APDU)."""
        if self.fast is not None:
            return self.fast.meaning
        return getattr(self.effective(), "apdu_name", self.apdu)


def _info(pkt: Packet) -> str:
    try:
        text = pkt.mysummary()
    except Exception:  # noqa: BLE001 - a summary never stops output
        text = ""
    return text if isinstance(text, str) else str(text)
