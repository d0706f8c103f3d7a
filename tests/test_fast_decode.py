"""The fast APDU decoder (`layers.fastapdu`) against the Packet path, APDU by APDU: on every
APDU of the shared corpus (plain and deciphered; the keys its manifest and interop scenarios
publish), of a generated bench capture (ciphered and plain), on generated APDUs holding every
A-XDR type read, and on random bytes and mutations of the real APDUs. For every input either
`decode_apdu` gives None or each attribute equals what the Packet path gives (`fields` compared
as JSON text, byte for byte); and it must decode the covered APDUs, not leave them all to the
Packet path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
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
from dissector.analysis.tracker import _octet_string, invoke_id, method_of
from dissector.output import fields as output_fields
from dissector.output.fields import packet_fields
from keys.keystore import Keystore, load_keystore
from layers import fast_axdr
from layers.apdu import APDU
from layers.apdu.action import ActionRequestNormal, ActionResponseNormal
from layers.apdu.get import (
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDatablock,
)
from layers.apdu.notification import DataNotification
from layers.apdu.set import SetRequestNormal, SetResponseNormal
from layers.expert import findings_of
from layers.fastapdu import ENABLED, FastApdu, decode_apdu
from layers.fields import encode_length
from layers.tree import iter_tree

#: The variants the fast path reads: a clean APDU of these must not be left to the Packet path.
COVERED = (GetRequestNormal, GetRequestNext, GetRequestWithList, GetResponseNormal,
           GetResponseWithDatablock, SetRequestNormal, SetResponseNormal, ActionRequestNormal,
           ActionResponseNormal, DataNotification)
#: First bytes of get/set/action/data-notification APDUs in the clear.
SERVICE_TAGS = (0xC0, 0xC1, 0xC3, 0xC4, 0xC5, 0xC7, 0x0F)
ATTRIBUTES = ("name", "fields", "summary", "invoke_id", "method", "result", "octet_string")


def packet_path(data: bytes) -> tuple[Any, dict[str, Any], list[Any]]:
    """The Packet dissection of `data`, what the contract reads of it, and its findings."""
    pkt = APDU(data)
    facts = {
        "name": pkt.apdu_name,
        "fields": packet_fields(pkt),
        "summary": pkt.mysummary(),
        "invoke_id": invoke_id(pkt),
        "method": method_of(pkt),
        "result": next((p.fields.get("result") for p in iter_tree(pkt) if "result" in p.fields),
                       None),
        "octet_string": _octet_string(pkt),
    }
    return pkt, facts, findings_of(pkt)


def check(data: bytes) -> FastApdu | None:
    """Decode `data` both ways; fail unless the fast path gives None or exactly the same."""
    fast = decode_apdu(data)
    if fast is None:
        return None
    _, facts, found = packet_path(data)
    assert found == [], (data.hex(), found)
    for name in ATTRIBUTES:
        got, want = getattr(fast, name), facts[name]
        if name == "fields":  # the text byte for byte, as the JSON writer gives the dict
            assert fast.text == json.dumps(want), data.hex()
            assert json.dumps(got) == fast.text, data.hex()  # `fields` reads the text back
        else:
            assert type(got) is type(want) and got == want, (name, data.hex(), got, want)
    return fast


def must_decode(data: bytes) -> bool:
    """Whether the fast path must read `data`: a covered variant the Packet path reads clean."""
    pkt, _, found = packet_path(data)
    return isinstance(pkt, COVERED) and not found


# --------------------------------------------------------------------------- real APDUs

def _apdus_of(records: Iterator[Any]) -> Iterator[bytes]:
    """The APDU bytes of records: as received, and the plaintext deciphered from them."""
    for rec in records:
        original = rec.packet.original
        if isinstance(original, bytes) and original:
            yield original
        plain = rec.plaintext()
        if plain:
            yield bytes(plain)


@cache
def corpus_apdus() -> tuple[bytes, ...]:
    """Every distinct APDU (plaintexts included) of the corpus captures, its manifest items and
    the seed case."""
    return tuple(dict.fromkeys(_apdus_of(corpus_records())))


@pytest.fixture(scope="module")
def bench_apdus(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, ...]:
    """Every distinct APDU (plaintexts included) of a 2000-APDU head-end capture and of its
    plain form."""
    out_dir = tmp_path_factory.mktemp("bench")
    for extra in ([], ["--plain"]):
        subprocess.run([sys.executable, str(ROOT / "bench" / "generate.py"), "--sizes", "2000",
                        "--out", str(out_dir), *extra], check=True, capture_output=True)
    ports = {4061: "hdlc"}
    ciphered = dissect_capture(str(out_dir / "headend-2k.pcap"),
                               Dissector(load_keystore(out_dir / "headend-2k.keys.toml")), ports)
    plain = dissect_capture(str(out_dir / "plain-2k.pcap"), Dissector(Keystore()), ports)
    return tuple(dict.fromkeys((*_apdus_of(ciphered), *_apdus_of(plain))))


def test_the_fast_path_is_on() -> None:
    """The layers still write their fields as the fast path does (else it is switched off), and
    its depth bound is the JSON writer's."""
    assert ENABLED and fast_axdr.DATA_ENABLED
    assert fast_axdr.JSON_MAX_DEPTH == output_fields.MAX_DEPTH


def test_corpus_apdus_decode_as_the_packet_path() -> None:
    apdus = corpus_apdus()
    decoded = {data for data in apdus if check(data) is not None}
    missed = [data.hex() for data in apdus if data not in decoded and must_decode(data)]
    assert missed == []
    services = [data for data in apdus if data[0] in SERVICE_TAGS]
    assert len(apdus) > 2000 and len(decoded) > 700
    print(f"corpus: {len(apdus)} APDUs, {len(services)} get/set/action/data-notification,"
          f" {len(decoded)} fast-decoded")


def test_bench_apdus_decode_as_the_packet_path(bench_apdus: tuple[bytes, ...]) -> None:
    services = [data for data in bench_apdus if data[0] in SERVICE_TAGS]
    decoded = [data for data in bench_apdus if check(data) is not None]
    assert len(services) > 1500
    assert sum(1 for data in services if decode_apdu(data) is not None) >= 0.95 * len(services)
    missed = {data.hex() for data in services if decode_apdu(data) is None and must_decode(data)}
    assert missed == set()
    print(f"bench: {len(bench_apdus)} APDUs, {len(services)} get/set/action/data-notification,"
          f" {len(decoded)} fast-decoded")


# --------------------------------------------------------------------------- generated APDUs

def _length(n: int, long_form: bool) -> bytes:
    return bytes([0x82]) + n.to_bytes(2, "big") if long_form else encode_length(n)


_FIXED_SIZES = {5: 4, 6: 4, 13: 1, 15: 1, 16: 2, 17: 1, 18: 2, 20: 8, 21: 8, 22: 1, 23: 4, 24: 8,
                25: 12, 26: 5, 27: 4}
_DATE_TIMES = [bytes.fromhex(h) for h in (
    "07E90A090408351400800000", "FFFFFFFFFFFFFFFFFF8000FF", "07E8FDFE0117000000FF8880",
    "07E80101FF00000000003C00", "07E8011F020A0B0C0D000000")]
_lengths = st.booleans()


@st.composite
def _scalar(draw: st.DrawFn) -> bytes:
    tag = draw(st.sampled_from([0, 255, 3, 4, 9, 10, 12, *_FIXED_SIZES]))
    if tag in (0, 255):
        return bytes([tag])
    if tag == 3:
        return bytes([3, draw(st.integers(0, 255))])
    if tag == 4:
        bits = draw(st.integers(0, 80))
        return b"\x04" + _length(bits, draw(_lengths)) + draw(
            st.binary(min_size=(bits + 7) // 8, max_size=(bits + 7) // 8))
    if tag in _FIXED_SIZES:
        size = _FIXED_SIZES[tag]
        value = draw(st.one_of(st.binary(min_size=size, max_size=size),
                               st.sampled_from([d[:size] for d in _DATE_TIMES] +
                                               [b"\x7f\xc0" + bytes(size - 2) if size > 2 else
                                                bytes(size)])))
        return bytes([tag]) + value
    value = draw(st.one_of(st.binary(max_size=40), st.sampled_from(_DATE_TIMES),
                           st.text(max_size=12).map(lambda t: t.encode()),
                           st.sampled_from([b"\x01\x00\x01\x08\x00\xff", b"caf\xe9", b"\xff\xfe"])))
    return bytes([tag]) + _length(len(value), draw(_lengths)) + value


def _sequence(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda tag, items, long_form: bytes([tag]) + _length(len(items), long_form)
                     + b"".join(items), st.sampled_from([1, 2]),
                     st.lists(children, max_size=5), _lengths)


DATA = st.recursive(_scalar(), _sequence, max_leaves=24)
BYTE = st.integers(0, 255)
_DESCRIPTOR = st.builds(lambda cid, obis, ident: cid.to_bytes(2, "big") + obis + bytes([ident]),
                        st.sampled_from([1, 3, 7, 8, 15, 64, 70, 999, 0xFFFF]),
                        st.binary(min_size=6, max_size=6), BYTE)
_SELECTION = st.one_of(st.just(b"\x00"), st.builds(
    lambda flag, selector, data: bytes([flag, selector]) + data,
    st.integers(1, 255), BYTE, DATA))


@st.composite
def _service_apdu(draw: st.DrawFn) -> bytes:
    """A get/set/action/data-notification APDU of a covered variant, enums drawn from 0..255."""
    inv = bytes([draw(BYTE)])
    kind = draw(st.sampled_from(["get-req", "get-next", "get-list", "get-res", "block", "set-req",
                                 "set-res", "act-req", "act-res", "notif"]))
    if kind == "get-req":
        return b"\xc0\x01" + inv + draw(_DESCRIPTOR) + draw(_SELECTION)
    if kind == "get-next":
        return b"\xc0\x02" + inv + draw(st.binary(min_size=4, max_size=4))
    if kind == "get-list":
        items = draw(st.lists(st.tuples(_DESCRIPTOR, _SELECTION), max_size=4))
        return b"\xc0\x03" + inv + encode_length(len(items)) + b"".join(a + b for a, b in items)
    if kind == "get-res":
        if draw(st.booleans()):
            return b"\xc4\x01" + inv + b"\x00" + draw(DATA)
        return b"\xc4\x01" + inv + b"\x01" + bytes([draw(BYTE)])
    if kind == "block":
        head = b"\xc4\x02" + inv + bytes([draw(st.sampled_from([0, 1, 2, 255]))]) + \
            draw(st.binary(min_size=4, max_size=4))
        raw = draw(st.binary(max_size=300))
        return head + draw(st.sampled_from([b"\x00" + encode_length(len(raw)) + raw,
                                            b"\x01" + bytes([draw(BYTE)])]))
    if kind == "set-req":
        return b"\xc1\x01" + inv + draw(_DESCRIPTOR) + draw(_SELECTION) + draw(DATA)
    if kind == "set-res":
        return b"\xc5\x01" + inv + bytes([draw(BYTE)])
    if kind == "act-req":
        return b"\xc3\x01" + inv + draw(_DESCRIPTOR) + draw(
            st.one_of(st.just(b"\x00"), st.builds(lambda f, d: bytes([f]) + d,
                                                   st.integers(1, 255), DATA)))
    if kind == "act-res":
        params = draw(st.one_of(
            st.just(b"\x00"), st.builds(lambda f, d: bytes([f, 0]) + d, st.integers(1, 255), DATA),
            st.builds(lambda f, r: bytes([f, 1, r]), st.integers(1, 255), BYTE)))
        return b"\xc7\x01" + inv + bytes([draw(BYTE)]) + params
    when = draw(st.sampled_from([b"\x00", b"\x0c" + _DATE_TIMES[0], b"\x09\x0c" + _DATE_TIMES[1],
                                 b"\x05" + _DATE_TIMES[2][:5], b"\x0c" + _DATE_TIMES[3]]))
    return b"\x0f" + draw(st.binary(min_size=4, max_size=4)) + when + draw(DATA)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_service_apdu())
def test_generated_apdus_decode_as_the_packet_path(data: bytes) -> None:
    """Every A-XDR type read, both length forms, every enum byte: the same as the Packet path,
    and decoded whenever the Packet path reads the APDU without a finding."""
    fast = check(data)
    if fast is None:
        assert not must_decode(data), data.hex()


def _nested(levels: int, leaf: bytes = b"\x11\x05") -> bytes:
    return b"\x02\x01" * levels + leaf


@pytest.mark.parametrize("levels", [0, 1, 30, 61, 62, 63, 64, 65, 66, 70])
@pytest.mark.parametrize("wrap", [
    lambda d: b"\xc4\x01\xc1\x00" + d,
    lambda d: b"\xc7\x01\xc1\x00\x01\x00" + d,
    lambda d: b"\xc0\x01\xc1\x00\x07\x01\x00\x63\x01\x00\xff\x02\x01\x01" + d,
    lambda d: b"\x0f\x00\x00\x00\x01\x00" + d,
])
def test_nesting_up_to_the_bounds(levels: int, wrap: Any) -> None:
    """Structures nested around the A-XDR and JSON depth bounds: the same result or None, and
    decoded well within them. The fields are also what the JSON writer gives when the APDU
    sits up to `NEST_MARGIN` levels down (a deciphered APDU under its envelope)."""
    for leaf in (b"\x11\x05", b"\x01\x00", b"\x09\x01\xaa"):
        data = wrap(_nested(levels, leaf))
        fast = check(data)
        if levels <= 60:
            assert fast is not None, data.hex()
        if fast is not None:
            pkt = APDU(data)
            for depth in range(1, fast_axdr.NEST_MARGIN + 1):
                assert json.dumps(fast.fields) == json.dumps(packet_fields(pkt, depth))


def test_element_bound() -> None:
    """An array of more elements than `axdr.MAX_ELEMENTS` is the Packet path's (a finding)."""
    from layers.axdr import MAX_ELEMENTS

    for count in (MAX_ELEMENTS, MAX_ELEMENTS + 1):
        data = b"\xc4\x01\xc1\x00\x01" + encode_length(count) + b"\x00" * count
        fast = check(data)
        assert (fast is not None) == (count <= MAX_ELEMENTS)


# --------------------------------------------------------------------------- fuzzing

@cache
def _seeds() -> tuple[bytes, ...]:
    return tuple(sorted((d for d in corpus_apdus() if d[0] in SERVICE_TAGS and len(d) < 400),
                        key=lambda d: (len(d), d)))


#: Bytes a mutation sets (besides any byte): A-XDR tags, lengths and length forms.
_SET_VALUES = (0, 1, 2, 9, 12, 0x7F, 0x80, 0x81, 0x84, 0x85, 0xFF)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(_seeds, _SET_VALUES))
def test_mutated_corpus_apdus(data: bytes) -> None:
    """Bit flips, changed bytes, truncations and extensions of real APDUs."""
    check(data)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(SERVICE_TAGS), st.binary(max_size=60))
def test_random_bytes(tag: int, rest: bytes) -> None:
    check(bytes([tag]) + rest)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_any_bytes(data: bytes) -> None:
    """Any input at all, the empty one too: never an exception."""
    fast = decode_apdu(data)
    if fast is not None:
        check(data)
