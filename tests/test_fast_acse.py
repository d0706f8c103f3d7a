"""The fast ACSE decoder (`layers.fastacse`) against the Packet path, APDU by APDU: every AARQ,
AARE, RLRQ and RLRE of the shared corpus (with the keys its manifest and interop scenarios
publish), of the seed case and of generated head-end captures (ciphered, with keys; and in the
clear), the initiate-requests/-responses deciphered from them, generated ACSE APDUs holding
every component read, and random bytes and mutations of the real ones. For every input either
`decode_acse`/`decode_initiate` gives None or each attribute equals what the Packet path gives
(`fields` compared as JSON text, byte for byte, deciphered user-information included); and
they must read the APDUs the Packet path reads without a finding, not leave them all to it."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from conftest import ROOT
from corpus_records import corpus_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutated

from dissector.analysis.capture import dissect_capture
from dissector.analysis.pipeline import Dissector
from dissector.output.fields import packet_fields
from keys.context import KeyContext
from keys.keystore import Keystore, load_keystore
from layers.apdu import APDU
from layers.apdu.acse_fields import APPLICATION_CONTEXT_OID, MECHANISM_OID
from layers.expert import findings_of
from layers.fastacse import ENABLED, FastAcse, FastInitiate, decode_acse, decode_initiate
from layers.fastapdu import FastApdu
from layers.fields import encode_length

sys.path.insert(0, str(ROOT / "bench"))
import generate

ACSE_TAGS = (0x60, 0x61, 0x62, 0x63)
#: What the association tracker and the key context read of an ACSE packet.
FACTS = ("calling_ap_title", "responding_ap_title", "mechanism_id", "application_context_id",
         "authentication_value", "result", "diagnostic", "reason")
#: What the tracker reads of an initiate packet (`conformance` as an int).
INITIATE_FACTS = ("dedicated_key", "client_max_receive_pdu_size", "conformance",
                  "server_max_receive_pdu_size")


def _text(fields: Any) -> str:
    return json.dumps(fields)


def _same(got: Any, want: Any, what: str, data: bytes) -> None:
    assert type(got) is type(want) and got == want, (what, data.hex(), got, want)


def _initiate_facts(pkt: Any) -> dict[str, Any]:
    out = {name: getattr(pkt, name, None) for name in INITIATE_FACTS}
    if out["dedicated_key"] is not None:
        out["dedicated_key"] = bytes(out["dedicated_key"])
    if out["conformance"] is not None:
        out["conformance"] = int(out["conformance"])
    return out


def _tracker_view(pkt: Any) -> tuple[Any, ...] | None:
    """What the tracker's `_initiate` takes of an ACSE APDU's user-information."""
    user = getattr(pkt, "user_information", None)
    if not getattr(user, "apdu_name", "").startswith("initiate-"):
        return None
    return user.apdu_name, tuple(_initiate_facts(user).values())


def _packet_agrees(fast: FastAcse | FastInitiate, data: bytes) -> Any:
    """The Packet dissection of `data`; fail unless it has no finding and the fast result's
    name, fields (as JSON text) and summary are the same as its own."""
    pkt = APDU(data)
    assert findings_of(pkt) == [], (data.hex(), findings_of(pkt))
    assert fast.name == fast.apdu_name == pkt.apdu_name, data.hex()
    assert _text(fast.fields) == _text(packet_fields(pkt)), data.hex()
    _same(fast.summary, pkt.mysummary(), "summary", data)
    return pkt


def check_initiate(data: bytes) -> FastInitiate | None:
    """Decode `data` both ways; fail unless the fast path gives None or exactly the same."""
    fast = decode_initiate(data)
    if fast is None:
        return None
    assert isinstance(fast, FastApdu)
    pkt = _packet_agrees(fast, data)
    # no invoke-id, method descriptor, result field nor A-XDR octet-string in an initiate
    assert (fast.invoke_id, fast.method, fast.result, fast.octet_string) == (None,) * 4
    for name, want in _initiate_facts(pkt).items():
        _same(getattr(fast, name), want, name, data)
    return fast


def check_acse(data: bytes) -> FastAcse | None:
    """Decode `data` both ways; fail unless the fast path gives None or exactly the same."""
    fast = decode_acse(data)
    if fast is None:
        return None
    pkt = _packet_agrees(fast, data)
    for name in FACTS:
        _same(getattr(fast, name), getattr(pkt, name, None), name, data)
    assert fast.parent is None and fast.underlayer is None
    assert _tracker_view(fast) == _tracker_view(pkt)
    user = pkt.user_information
    env = fast.open_envelope()
    if fast.envelope_bytes is None:
        assert env is None
        if user is None:  # no APDU to put in: the text is whole
            assert fast.initiate is None
            assert fast.text_with('{"layer": "x"}') == fast.text_with(None)
        else:
            assert fast.initiate is not None and fast.initiate == check_initiate(user.original)
            assert fast.text_with(fast.initiate.text) == fast.text_with(None)
    else:
        assert fast.initiate is None and fast.envelope_bytes == bytes(user.original)
        assert env is not None and env.parent is fast
        assert fast.text_with(env.json_text()) == fast.text_with(None)
        assert _text(env.json_fields()) == _text(packet_fields(user))
        # the IV title the key context takes for it: the enclosing APDU's, as for the Packet
        ctx = KeyContext(Keystore())
        assert ctx.system_title(env) == ctx.system_title(user)
    return fast


# --------------------------------------------------------------------------- real APDUs

@dataclass(frozen=True)
class Sample:
    """An ACSE APDU as a capture's record gave it: its bytes, the Packet path's fields and
    summary with the key context's deciphering, and the plaintext deciphered."""

    data: bytes
    fields: str
    summary: str
    plaintext: bytes | None


def _samples(records: Iterator[Any]) -> Iterator[Sample]:
    for rec in records:
        if rec.apdu in ("aarq", "aare", "rlrq", "rlre"):
            plain = rec.plaintext()
            yield Sample(bytes(rec.packet.original), _text(packet_fields(rec.packet)),
                         rec.packet.mysummary(), bytes(plain) if plain else None)


@cache
def corpus_samples() -> tuple[Sample, ...]:
    """Every distinct ACSE record of the corpus captures, its manifest items and the seed case."""
    return tuple(dict.fromkeys(_samples(corpus_records())))


@pytest.fixture(scope="module")
def bench_samples(tmp_path_factory: pytest.TempPathFactory
                  ) -> dict[str, tuple[Keystore, tuple[Sample, ...]]]:
    """The ACSE records of a generated head-end capture (read with its keys) and, when the
    generator makes one, of a capture in the clear; with the keystore they were read with."""
    out_dir = tmp_path_factory.mktemp("bench")
    runs = [("headend", {})]
    if "plain" in inspect.signature(generate.generate).parameters:
        runs.append(("plain", {"plain": True}))
    out = {}
    for name, extra in runs:
        made = generate.generate(1500, out_dir, meters=32, **extra)
        files = made["files"]
        store = Keystore() if extra else load_keystore(files[".keys.toml"])
        out[name] = store, tuple(_samples(dissect_capture(files[".pcap"], Dissector(store),
                                                          {4061: "hdlc"})))
    return out


def check_sample(sample: Sample) -> FastAcse | None:
    """`check_acse`, and the fields once deciphered as the record's Packet gives them."""
    fast = check_acse(sample.data)
    if fast is None:
        return None
    inner = decode_initiate(sample.plaintext) if sample.plaintext else None
    if sample.plaintext:
        assert fast.envelope_bytes is not None
        assert check_initiate(sample.plaintext) == inner
        if inner is None:  # only a plaintext the Packet path finds fault with is left to it
            assert findings_of(APDU(sample.plaintext)), sample.plaintext.hex()
            return fast
    before = _text(fast.fields)
    env = fast.open_envelope()
    apdu_text = inner.text if inner is not None else None
    if env is not None:
        apdu_text = env.json_text(apdu_text)
    assert fast.text_with(apdu_text) == sample.fields  # byte for byte, as json.dumps writes it
    assert _text(fast.fields) == before  # its own fields are left as they are
    assert fast.summary == sample.summary  # deciphering does not change the summary
    return fast


def must_decode(data: bytes) -> bool:
    return not findings_of(APDU(data))


def test_the_fast_path_is_on() -> None:
    """The layers still write their fields as the fast reading does (else it is off)."""
    assert ENABLED


def test_corpus_acse_decodes_as_the_packet_path() -> None:
    samples = corpus_samples()
    decoded = [s for s in samples if check_sample(s) is not None]
    missed = [s.data.hex() for s in samples if decode_acse(s.data) is None and must_decode(s.data)]
    assert missed == []
    ciphered = [s for s in decoded if decode_acse(s.data).envelope_bytes is not None]
    plaintexts = [s for s in samples if s.plaintext]
    assert len(samples) >= 50 and len(decoded) >= 45 and len(ciphered) >= 15
    assert all(decode_initiate(s.plaintext) is not None for s in plaintexts)
    print(f"corpus: {len(samples)} ACSE APDUs, {len(decoded)} fast-decoded ({len(ciphered)}"
          f" with a ciphered user-information), {len(plaintexts)} deciphered initiates")


def test_bench_acse_decodes_as_the_packet_path(
        bench_samples: dict[str, tuple[Keystore, tuple[Sample, ...]]]) -> None:
    for name, (_, samples) in bench_samples.items():
        decoded = [s for s in samples if check_sample(s) is not None]
        assert len(samples) >= 100, name
        assert len(decoded) >= 0.95 * len(samples), (name, len(decoded), len(samples))
        missed = {s.data.hex() for s in samples
                  if decode_acse(s.data) is None and must_decode(s.data)}
        assert missed == set(), name
        keys = [s for s in samples if s.plaintext and b"\x01\x01\x10" == s.plaintext[:3]]
        assert name != "headend" or len(keys) >= 20  # AARQs carrying a dedicated key
        assert all(decode_initiate(s.plaintext).dedicated_key == s.plaintext[3:19] for s in keys)
        print(f"bench {name}: {len(samples)} ACSE APDUs, {len(decoded)} fast-decoded,"
              f" {sum(1 for s in samples if s.plaintext)} deciphered initiates")


def test_open_envelope_deciphers_as_the_packet(
        bench_samples: dict[str, tuple[Keystore, tuple[Sample, ...]]]) -> None:
    """The envelope `open_envelope` gives deciphers through a key context as the one in the
    Packet: its IV title is the enclosing AARQ's calling / AARE's responding AP-title."""
    store, samples = bench_samples["headend"]
    done = 0
    for sample in samples:
        fast = decode_acse(sample.data)
        if sample.plaintext and fast is not None and fast.name in ("aarq", "aare"):
            res = KeyContext(store).decipher(fast.open_envelope())
            assert res.plaintext == sample.plaintext, sample.data.hex()
            done += 1
    assert done >= 40


# --------------------------------------------------------------------------- generated APDUs

def tlv(tag: int, body: bytes, long_form: bool = False) -> bytes:
    head = bytes([0x81, len(body)]) if long_form and len(body) < 256 else encode_length(len(body))
    return bytes([tag]) + head + body


LONG = st.sampled_from([False, False, False, True])
BYTE = st.integers(0, 255)
_CONFORMANCE = st.one_of(
    st.binary(min_size=3, max_size=3).map(lambda b: b"\x5f\x1f\x04\x00" + b),
    st.just(b"\x5f\x1f\x04\x00\x00\x1e\x5d"), st.just(b"\x5f\x1f\x04\x07\x00\x00\x00"),
    st.just(b"\x5f\x1f\x03\x00\x1e\x5d"), st.just(b"\x1f\x5f\x04\x00\x00\x1e\x5d"))


@st.composite
def initiates(draw: st.DrawFn) -> bytes:
    """An InitiateRequest/Response: every OPTIONAL and usage flag value, a conformance block
    that is mostly right, sometimes a byte too many or too few."""
    def optional(value: bytes) -> bytes:
        flag = draw(st.sampled_from([0, 1, 1, 0xFF]))
        return bytes([flag]) + (value if flag else b"")

    if draw(st.booleans()):
        key = draw(st.sampled_from([b"", bytes(range(16)), bytes(32), b"\xaa" * 130]))
        body = (b"\x01" + optional(tlv(0x00, key, draw(LONG))[1:]) + optional(bytes([draw(BYTE)]))
                + optional(bytes([draw(BYTE)])) + bytes([draw(st.sampled_from([6, 5, 0xFF]))])
                + draw(_CONFORMANCE) + draw(st.binary(min_size=2, max_size=2)))
    else:
        vaa = draw(st.sampled_from([b"\x00\x07", b"\xfa\x00", b"\x12\x34", b"\xff\xff"]))
        body = (b"\x08" + optional(bytes([draw(BYTE)])) + bytes([draw(st.sampled_from([6, 0]))])
                + draw(_CONFORMANCE) + draw(st.binary(min_size=2, max_size=2)) + vaa)
    return draw(st.sampled_from([body, body, body, body[:-1], body + b"\x00"]))


@st.composite
def _user_apdu(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["initiate", "initiate", "envelope", "general", "none", "other"]))
    if kind == "initiate":
        return draw(initiates())
    if kind in ("envelope", "general"):
        sc = draw(st.sampled_from([0x30, 0x20, 0x10, 0x00]))
        content = bytes([sc]) + draw(st.binary(min_size=4, max_size=4)) + draw(
            st.binary(min_size=0, max_size=40))
        if kind == "general":
            return b"\xdb\x08" + draw(st.binary(min_size=8, max_size=8)) + tlv(0, content)[1:]
        return tlv(draw(st.sampled_from([0x21, 0x28, 0x41, 0x48, 0xC8])), content, draw(LONG))
    if kind == "none":
        return b""
    return draw(st.sampled_from([b"\x0e\x01\x06\x01", b"\x62\x00", b"\xff"]))


_APP_CONTEXTS = [APPLICATION_CONTEXT_OID + bytes([i]) for i in (1, 2, 3, 4, 0, 5, 255)] + [
    b"\x2a\x86\x48", b""]
_MECHANISMS = [MECHANISM_OID + bytes([i]) for i in (0, 1, 2, 5, 7, 8, 255)] + [b"\x2a\x03"]


@st.composite
def _component(draw: st.DrawFn, tag: int, what: str) -> bytes:
    """One component of `what` kind under `tag`: mostly well-formed, sometimes not."""
    long1, long2 = draw(LONG), draw(LONG)
    if what == "bits":
        return tlv(tag, draw(st.sampled_from([b"\x07\x80", b"\x00", b"", b"\x07\x80\x00"])), long1)
    if what == "context":
        return tlv(tag, tlv(0x06, draw(st.sampled_from(_APP_CONTEXTS)), long2), long1)
    if what == "mechanism":
        return tlv(tag, draw(st.sampled_from(_MECHANISMS)), long1)
    if what in ("octets", "auth"):
        inner = draw(st.sampled_from([0x04, 0x04, 0x02, 0x1F]) if what == "octets" else
                     st.sampled_from([0x80, 0x80, 0x81, 0xA2, 0xA3, 0x04]))
        return tlv(tag, tlv(inner, draw(st.binary(max_size=20)), long2), long1)
    if what == "integer":
        return tlv(tag, tlv(0x02, draw(st.binary(max_size=5)), long2), long1)
    if what == "list":  # application-context-name-list: OIDs
        oids = draw(st.lists(st.sampled_from(_APP_CONTEXTS[:4]), max_size=3))
        return tlv(tag, b"".join(tlv(0x06, oid) for oid in oids), long1)
    if what == "implementation":
        if tag == 0x9D:
            return tlv(tag, draw(st.binary(max_size=12)), long1)
        return tlv(tag, tlv(0x1A, draw(st.binary(max_size=12))), long1)
    if what == "result":
        value = draw(st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x03", b"\xff", b"\x00\x01"]))
        return tlv(tag, tlv(0x02, value, long2), long1)
    if what == "diagnostic":
        source = draw(st.sampled_from([0xA1, 0xA1, 0xA2, 0xA3]))
        value = bytes([draw(st.sampled_from([0, 1, 2, 13, 14, 15, 255]))])
        return tlv(tag, tlv(source, tlv(0x02, value, long2)), long1)
    if what == "reason":
        return tlv(tag, draw(st.sampled_from([b"\x00", b"\x01", b"\x1e", b"", b"\x00\x01",
                                              b"\xff"])), long1)
    inner_tag = draw(st.sampled_from([0x04, 0x04, 0x04, 0x80]))
    return tlv(tag, tlv(inner_tag, draw(_user_apdu()), long2), long1)


_SERVICE = [(0x80, "bits"), (0xA1, "context")]
_TAIL = [(0x9D, "implementation"), (0xBD, "implementation"), (0xBE, "user")]
#: APDU tag -> (mandatory components, the others) by tag, as the Green Book numbers them.
KINDS = {
    0x60: ([(0xA1, "context")], [
        (0x80, "bits"), (0xA2, "octets"), (0xA3, "octets"), (0xA4, "integer"),
        (0xA5, "integer"), (0xA6, "octets"), (0xA7, "octets"), (0xA8, "integer"),
        (0xA9, "integer"), (0x8A, "bits"), (0x8B, "mechanism"), (0xAC, "auth"), (0xAD, "list"),
        *_TAIL]),
    0x61: ([(0xA1, "context"), (0xA2, "result"), (0xA3, "diagnostic")], [
        (0x80, "bits"), (0xA4, "octets"), (0xA5, "octets"), (0xA6, "integer"),
        (0xA7, "integer"), (0x88, "bits"), (0x89, "mechanism"), (0xAA, "auth"), (0xAB, "list"),
        *_TAIL]),
    0x62: ([], [(0x80, "reason"), (0xBE, "user")]),
    0x63: ([], [(0x80, "reason"), (0xBE, "user")]),
}


def _component_class(component: tuple[int, str]) -> Any:
    """9D and BD are both implementation-information: one of them at most."""
    return component[1] if component[1] == "implementation" else component[0]


@st.composite
def acse_apdus(draw: st.DrawFn) -> bytes:
    """An ACSE APDU of distinct components in any order (the mandatory ones mostly there),
    sometimes with an undefined component or a byte after its end."""
    tag = draw(st.sampled_from(list(KINDS)))
    mandatory, others = KINDS[tag]
    chosen = draw(st.lists(st.sampled_from(others), unique_by=_component_class,
                           max_size=len(others)))
    if draw(st.sampled_from([True, True, True, False])):
        chosen = mandatory + [c for c in chosen if c not in mandatory]
    parts = [draw(_component(t, what)) for t, what in chosen]
    parts = draw(st.permutations(parts)) if draw(st.booleans()) else parts
    if draw(st.sampled_from([False] * 9 + [True])):
        parts.insert(draw(st.integers(0, len(parts))), tlv(0x9C, b"\x01"))
    data = tlv(tag, b"".join(parts), draw(LONG))
    return draw(st.sampled_from([data] * 8 + [data + b"\x00", data[:-1]]))


def _sure(data: bytes) -> bool:
    """Whether the fast reading must read `data`: no finding in the Packet path, and nothing
    the fast reading leaves to it by choice (a multi-byte inner tag, a user-information that
    is no initiate and no glo-/ded-initiate or general-glo envelope)."""
    pkt = APDU(data)
    if findings_of(pkt):
        return False
    for comp in pkt.components:
        if getattr(comp, "inner_tag", 0) & 0x1F == 0x1F:
            return False
    user = pkt.user_information
    return user is None or user.apdu_name in (
        "initiate-request", "initiate-response", "glo-initiate-request",
        "glo-initiate-response", "ded-initiate-request", "ded-initiate-response",
        "general-glo-ciphering")


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(acse_apdus())
def test_generated_acse_decodes_as_the_packet_path(data: bytes) -> None:
    """Every component read, both length forms, defined and undefined values: the same as
    the Packet path, and read whenever the Packet path reads it without a finding."""
    if check_acse(data) is None:
        assert not _sure(data), data.hex()


@settings(max_examples=500, deadline=None)
@given(initiates())
def test_generated_initiates_decode_as_the_packet_path(data: bytes) -> None:
    if check_initiate(data) is None:
        assert not must_decode(data), data.hex()


# --------------------------------------------------------------------------- fuzzing

@cache
def _seeds() -> tuple[bytes, ...]:
    return tuple(sorted({s.data for s in corpus_samples()}, key=lambda d: (len(d), d)))


#: Bytes a mutation sets (besides any byte): tags, lengths and length forms of the ACSE
#: components and the initiates.
_SET_VALUES = (0, 1, 2, 4, 6, 0x1F, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xA1, 0xBE, 0xFF)


@cache
def _initiate_seeds() -> tuple[bytes, ...]:
    found = {s.plaintext for s in corpus_samples() if s.plaintext}
    found |= {bytes(APDU(d).user_information.original) for d in _seeds()
              if decode_acse(d) is not None and decode_acse(d).initiate is not None}
    return tuple(sorted(found))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(_seeds, _SET_VALUES))
def test_mutated_corpus_acse(data: bytes) -> None:
    """Bit flips, changed bytes, truncations and extensions of real ACSE APDUs."""
    check_acse(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(_initiate_seeds, _SET_VALUES))
def test_mutated_initiates(data: bytes) -> None:
    check_initiate(data)


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(ACSE_TAGS), st.binary(max_size=60))
def test_random_bytes(tag: int, rest: bytes) -> None:
    check_acse(bytes([tag]) + rest)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes(data: bytes) -> None:
    """Any input at all, the empty one too: never an exception."""
    if decode_acse(data) is not None:
        check_acse(data)
    if decode_initiate(data) is not None:
        check_initiate(data)
    assert decode_acse(bytearray(data)) == decode_acse(data)
