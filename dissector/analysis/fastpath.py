"""The fast path: records of the common APDUs made without Scapy Packets.

`dissect_fast` reads a plain APDU (`layers.fastapdu`) or a ciphered envelope
(`layers.fastenvelope`) from its bytes, deciphers the envelope through the link's key context
as the Packet path does, and reads the plaintext the same way. What it gives equals the Packet
path's record (tests/test_fastpath.py compares both on the corpus and the bench); anything it
is not sure of goes to the Packet path. The Packet dissection of a fast record is built only
when something asks for it (`-V`, the `-w` export, the Python API), replaying the key
context's answer so it needs no key state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from scapy.packet import Packet

from keys.context import KeyContext
from layers.apdu.base import APDU
from layers.expert import Finding, add_finding
from layers.fastacse import FastAcse, decode_acse, decode_initiate
from layers.fastapdu import FastApdu, decode_apdu
from layers.fastenvelope import ENVELOPES, FastEnvelope, read_envelope


@dataclass(slots=True)
class FastView:
    """A record's APDU as the fast path read it: the plain APDU, or the envelope and its
    deciphered APDU (None when not deciphered), or an ACSE APDU (`acse`) with the initiate
    of its user-information (plain, or deciphered from `envelope`); `build` makes the Packet
    dissection of `data`, the APDU's bytes."""

    data: bytes
    apdu: FastApdu | None
    envelope: FastEnvelope | None
    build: Callable[[], Packet]
    acse: FastAcse | None = None

    @property
    def name(self) -> str:
        if self.acse is not None:
            return self.acse.name
        env = self.envelope
        if env is not None:
            return env.apdu_name
        assert self.apdu is not None
        return self.apdu.name

    @property
    def inner_name(self) -> str | None:
        return self.apdu.name if self.envelope is not None and self.apdu is not None else None

    @property
    def meaning(self) -> str:
        """The name of the APDU that means something (the deciphered one, else the envelope;
        an ACSE APDU's own)."""
        if self.acse is None and self.apdu is not None:
            return self.apdu.name
        return self.name

    def fact(self, name: str) -> Any:
        """A fact of the APDU that means something (`FastApdu`'s invoke_id, method, result,
        octet_string); an ACSE APDU has none of them."""
        apdu = self.apdu
        return getattr(apdu, name) if apdu is not None and self.acse is None else None

    def findings(self) -> list[Finding]:
        env = self.envelope
        return list(env.__dict__.get("findings", ())) if env is not None else []

    def info(self) -> str:
        """The summary line's text, as the Packet path's `mysummary` (and the inner one's)."""
        env = self.envelope
        if self.acse is not None:
            if env is None or self.apdu is None:
                return self.acse.summary
            return f"{self.acse.summary} -> {self.apdu.summary}"
        if env is None:
            assert self.apdu is not None
            return self.apdu.summary
        if self.apdu is None:
            return env.summary()
        return f"{env.summary()} -> {self.apdu.summary}"

    def json_fields(self) -> dict[str, Any]:
        """The `fields` object of the JSON record, as `packet_fields` gives it."""
        return json.loads(self.fields_text())

    def fields_text(self) -> str:
        """`json.dumps` of `json_fields()`, made without the dict."""
        env = self.envelope
        apdu = self.apdu
        text = apdu.text if apdu is not None else None
        if env is not None:
            text = env.json_text(text)
        if self.acse is not None:
            return self.acse.text_with(text)
        assert text is not None
        return text


#: AARQ, AARE, RLRQ, RLRE.
ACSE_TAGS = frozenset({0x60, 0x61, 0x62, 0x63})


class Replay:
    """A key context that answers with what the fast path's deciphering found (a copy of the
    result, its findings put back on the envelope): the Packet dissection of a record, built
    later, then needs no key state and tries no key again."""

    __slots__ = ("findings", "result")

    def __init__(self, result: Any, findings: list[Finding]) -> None:
        self.result = result
        self.findings = findings

    def decipher(self, env: Any) -> Any:
        for f in self.findings:
            add_finding(env, f.severity, f.code, f.message)
        return replace(self.result, packet=None, findings=list(self.result.findings))


def dissect_fast(data: bytes, ctx: KeyContext) -> FastView | Packet | None:
    """The APDU `data` through the fast path: a `FastView`; a Packet when the envelope was
    deciphered here but its plaintext needs the Packet path; None when the Packet path must
    do it all (nothing was deciphered)."""
    if data[0] in ACSE_TAGS:
        return _acse(data, ctx)
    if data[0] not in ENVELOPES:
        apdu = decode_apdu(data)
        if apdu is None:
            return None
        return FastView(data, apdu, None, lambda: APDU(data))
    env = read_envelope(data)
    if env is None:
        return None
    return _deciphered(data, env, ctx, decode_apdu)


def _acse(data: bytes, ctx: KeyContext) -> FastView | Packet | None:
    """An AARQ, AARE, RLRQ or RLRE: its user-information's initiate in clear, or its
    envelope deciphered as any other. A dedicated key in clear is left to the Packet path
    (the redaction step zeroes it in the Packets)."""
    acse = decode_acse(data)
    if acse is None:
        return None
    if acse.envelope_bytes is None:
        initiate = acse.initiate
        if initiate is not None and initiate.dedicated_key:
            return None
        return FastView(data, initiate, None, lambda: APDU(data), acse)
    env = acse.open_envelope()
    if env is None:
        return None
    view = _deciphered(data, env, ctx, decode_initiate)
    if isinstance(view, FastView):
        view.acse = acse
    return view


def _deciphered(data: bytes, env: FastEnvelope, ctx: KeyContext,
                decode: Callable[[bytes], FastApdu | None]) -> FastView | Packet | None:
    """The record of `data` whose envelope `env` is deciphered here and its plaintext read
    by `decode` (a Packet when the plaintext needs the Packet path)."""
    try:
        res = ctx.decipher(env)
    except Exception:  # noqa: BLE001 - the Packet path words the failure as a finding
        return None
    env.deciphered = res
    replay = Replay(res, env.__dict__.get("findings", []))

    def build() -> Packet:
        return APDU(data, key_context=replay)

    inner = None
    if res is not None and res.plaintext is not None:
        if res.packet is not None or not res.is_apdu:
            return build()
        inner = decode(res.plaintext)
        if inner is None:
            return build()
    return FastView(data, inner, env, build)
