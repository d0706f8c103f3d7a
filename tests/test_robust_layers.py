"""Hostile and broken input against every layer: arbitrary bytes and mutated real frames (bit
flips, truncation, duplicated and swapped bytes, lengths set to extremes) never raise, stay
within a time bound, keep every input byte (`raw(Cls(b)) == b`), and what is wrong becomes a
finding: a damaged HDLC frame, a truncated APDU, a length larger than the input, nesting beyond
the limits.

Seeds are the frames and APDUs of the shared corpus and of pcaps/ (read in place).
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import time
from functools import cache

import pytest
from conftest import CORPUS, ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.packet import Packet

import layers
from layers import APDU, HDLC, LLC, Data, Wrapper
from layers.apdu.base import MAX_NESTING
from layers.axdr_values import MAX_DEPTH as AXDR_DEPTH
from layers.crc import crc16, crc16_bitwise
from layers.expert import findings_of
from layers.fields import encode_length
from layers.packet import DLMSPacket

TIME_LIMIT = 1.0  # seconds for one dissection of at most a few kilobytes
FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _concrete_layers() -> list[type[Packet]]:
    """Every packet class of the `layers` package that dissects bytes (not the abstract bases,
    which have no fields of their own)."""
    found: set[type[Packet]] = set()
    for info in pkgutil.walk_packages(layers.__path__, "layers."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Packet) and \
                    (obj.__module__.startswith("layers.") or issubclass(obj, DLMSPacket)) and \
                    obj.fields_desc and not obj.__name__.startswith("_"):
                found.add(obj)
    return sorted(found, key=lambda c: (c.__module__, c.__name__))


LAYERS = _concrete_layers()


def check(cls: type[Packet], data: bytes) -> Packet:
    """Dissect, and use the result the way the writers do; nothing may raise or be lost."""
    start = time.perf_counter()
    pkt = cls(data)
    findings_of(pkt)
    assert raw(pkt) == data, f"{cls.__name__} lost or changed input bytes"
    pkt.show(dump=True)
    pkt.summary()
    from dissector.output.fields import packet_fields

    json.dumps(packet_fields(pkt), default=str)
    took = time.perf_counter() - start
    assert took < TIME_LIMIT, f"{cls.__name__}: {took:.2f}s for {len(data)} bytes"
    return pkt


# ------------------------------------------------------------------------------------- seeds

def _hex(text: str | None) -> bytes | None:
    try:
        return bytes.fromhex(text) if text else None
    except ValueError:
        return None


@cache
def seeds() -> dict[str, list[bytes]]:
    """Real traffic by kind: HDLC frames, wrapper PDUs, APDUs (clear and plaintext)."""
    from dissector.analysis.capture import iter_pdus
    from dissector.stages import Pdu

    out: dict[str, set[bytes]] = {"hdlc": set(), "wrapper": set(), "apdu": set()}
    manifest = CORPUS / "manifest.json"
    if manifest.is_file():
        for item in json.loads(manifest.read_text())["items"]:
            for frame in item.get("frames", []):
                for data in (_hex(frame.get("hex")), _hex(frame.get("plaintext_hex"))):
                    if not data:
                        continue
                    kind = "hdlc" if data[0] == 0x7E else \
                        "wrapper" if data[:2] == b"\x00\x01" else "apdu"
                    out[kind].add(data)
    captures = sorted((ROOT / "pcaps").glob("*.pcap*"))
    if CORPUS.is_dir():
        captures += sorted(CORPUS.glob("*.pcap*")) + sorted(CORPUS.glob("interop/*/capture.pcap"))
    for path in captures:
        for item in iter_pdus(str(path)):
            if not isinstance(item, Pdu) or len(out[item.transport if item.transport != "raw"
                                                       else "apdu"]) > 3000:
                continue
            if item.transport == "hdlc":
                out["hdlc"].add(item.data)
                info = HDLC(item.data).fields.get("information")
                if isinstance(info, LLC) and info.payload:
                    out["apdu"].add(raw(info.payload))
            elif item.transport == "wrapper":
                out["wrapper"].add(item.data)
                out["apdu"].add(item.data[8:])
            else:
                out["apdu"].add(item.data)
    return {k: sorted(v) for k, v in out.items() if v}


def _seed_strategy(kind: str) -> st.SearchStrategy[bytes]:
    return st.deferred(lambda: st.sampled_from(seeds().get(kind) or [b"\x7e"]))


EXTREMES = [b"\x00", b"\x7f", b"\x80", b"\x81\xff", b"\x82\xff\xff", b"\x84\xff\xff\xff\xff",
            b"\xff", b"\xff\xff", b"\x00\x00"]


@st.composite
def mutated(draw: st.DrawFn, seed: st.SearchStrategy[bytes]) -> bytes:
    """A seed with one to four mutations: bit flip, truncation, duplicated run, swapped bytes,
    a byte or short run set to a length extreme, inserted random bytes."""
    data = bytearray(draw(seed))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "duplicate", "swap", "extreme",
                                   "insert"]))
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[max(1, i):]
        elif op == "duplicate":
            j = min(len(data), i + draw(st.integers(1, 16)))
            data[j:j] = data[i:j]
        elif op == "swap":
            j = draw(st.integers(0, len(data) - 1))
            data[i], data[j] = data[j], data[i]
        elif op == "extreme":
            value = draw(st.sampled_from(EXTREMES))
            data[i : i + len(value)] = value
        else:
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


# --------------------------------------------------------------------------- every layer

def test_every_layer_is_covered() -> None:
    names = {c.__name__ for c in LAYERS}
    assert {"HDLC", "LLC", "Wrapper", "AARQ", "GetResponseNormal", "DataStructure",
            "GeneralGloCiphering", "GeneralBlockTransfer", "CipheredContent", "GloGetRequest",
            "DedActionResponse", "GeneralSigning", "NestedTooDeep"} <= names
    assert len(LAYERS) > 150


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_each_layer_survives_edge_inputs(cls: type[Packet]) -> None:
    """Single bytes, all-zero and all-FF runs, lengths at their extremes."""
    for data in [bytes([b]) for b in (0x00, 0x01, 0x7E, 0x80, 0xFF)] + [
            b"\x00" * 40, b"\xff" * 40, b"\x7e" * 40, b"\x01\x84\xff\xff\xff\xff" * 4,
            b"\x02\x82\xff\xff" + b"\x02" * 30]:
        check(cls, data)


@FAST
@given(cls=st.sampled_from(LAYERS), data=st.binary(min_size=1, max_size=300))
def test_any_layer_any_bytes(cls: type[Packet], data: bytes) -> None:
    check(cls, data)


@FAST
@given(data=mutated(_seed_strategy("apdu")))
def test_mutated_apdus(data: bytes) -> None:
    check(APDU, data)


@FAST
@given(data=mutated(_seed_strategy("wrapper")))
def test_mutated_wrapper_pdus(data: bytes) -> None:
    check(Wrapper, data)


@FAST
@given(data=mutated(_seed_strategy("hdlc")))
def test_mutated_hdlc_frames_always_have_findings(data: bytes) -> None:
    """The FCS protects a frame: whatever the mutation did (unless it undid itself), a
    finding says the frame is damaged."""
    pkt = check(HDLC, data)
    if data not in seeds()["hdlc"]:
        assert findings_of(pkt), data.hex()


def test_every_truncated_apdu_has_a_finding() -> None:
    """Each clean APDU of the corpus, cut at every length: the cut is always reported."""
    clean = [a for a in seeds()["apdu"] if not findings_of(APDU(a))][:400]
    assert len(clean) > 100
    for apdu in clean:
        for n in range(1, len(apdu), max(1, len(apdu) // 40)):
            assert findings_of(APDU(apdu[:n])), f"{apdu[:n].hex()} (cut from {apdu.hex()})"


def test_every_damaged_hdlc_frame_has_a_finding() -> None:
    """Every single-bit error and every truncation of every clean corpus frame."""
    frames = [f for f in seeds()["hdlc"] if not findings_of(HDLC(f))][:60]
    assert frames
    for frame in frames:
        for i in range(len(frame)):
            damaged = bytearray(frame)
            damaged[i] ^= 1 << (i % 8)
            assert findings_of(HDLC(bytes(damaged))), bytes(damaged).hex()
            assert findings_of(HDLC(frame[:i + 1])) or i + 1 == len(frame)


@FAST
@given(extra=st.integers(1, 0xFFFF))
def test_wrapper_length_beyond_the_input(extra: int) -> None:
    pdu = next(p for p in seeds()["wrapper"] if not findings_of(Wrapper(p)))
    declared = len(pdu) - 8 + extra
    bad = pdu[:6] + min(declared, 0xFFFF).to_bytes(2, "big") + pdu[8:]
    assert "wrapper.truncated" in [f.code for f in findings_of(check(Wrapper, bad))]


# ---------------------------------------------------------------------------- A-XDR Data

def data_values(max_leaves: int = 20) -> st.SearchStrategy[Data]:
    from layers.axdr import DataArray, DataStructure

    leaves = st.one_of(
        st.integers(0, 255).map(lambda v: Data.of("unsigned", v)),
        st.integers(-(2**31), 2**31 - 1).map(lambda v: Data.of("double-long", v)),
        st.binary(max_size=40).map(Data.octet_string),
        st.text(alphabet="abcXYZ09 ", max_size=20).map(Data.visible_string),
        st.just(Data.of("null-data")),
        st.booleans().map(lambda v: Data.of("boolean", int(v))),
    )
    return st.recursive(leaves, lambda kids: st.one_of(
        st.lists(kids, max_size=5).map(lambda v: DataStructure(values=v)),
        st.lists(kids, max_size=5).map(lambda v: DataArray(values=v))), max_leaves=max_leaves)


def _get_response(data: bytes) -> bytes:
    return bytes.fromhex("C401C100") + data


@FAST
@given(value=data_values(), extreme=st.sampled_from(EXTREMES[1:]))
def test_data_count_or_length_beyond_the_input(value: Data, extreme: bytes) -> None:
    """A valid Data value whose first count/length is replaced by an extreme: a finding."""
    data = raw(value)
    if data[0] not in (1, 2, 9, 10):
        return
    _, used = _length_at(data, 1)
    bad = data[:1] + extreme + data[1 + used:]
    declared = _length_at(bad, 1)[0]
    body = len(bad) - 1 - len(extreme)
    pkt = check(APDU, _get_response(bad))
    if declared != _length_at(data, 1)[0] and (declared > body or declared == 0x7F):
        assert findings_of(pkt), bad.hex()


def _length_at(data: bytes, pos: int) -> tuple[int, int]:
    from layers.fields import decode_length

    try:
        return decode_length(data[pos:])
    except ValueError:
        return 1 << 40, 1


@FAST
@given(value=data_values())
def test_valid_data_round_trips_without_findings(value: Data) -> None:
    data = raw(value)
    pkt = check(APDU, _get_response(data))
    assert not findings_of(pkt)


def test_data_nesting_beyond_the_limit_is_a_finding() -> None:
    deep = b"\x02\x01" * (AXDR_DEPTH + 40) + b"\x11\x05"
    pkt = check(APDU, _get_response(deep))
    assert "axdr.too-deep" in [f.code for f in findings_of(pkt)]
    within = b"\x02\x01" * (AXDR_DEPTH - 1) + b"\x11\x05"
    assert not findings_of(check(APDU, _get_response(within)))


def test_findings_deep_in_a_frame_are_not_lost() -> None:
    """A truncated value at the deepest allowed Data level, inside HDLC/LLC/APDU: the finding
    is still found by walking the frame (the walk is not cut before the Data limit)."""
    deep = b"\x02\x01" * (AXDR_DEPTH - 2) + b"\x09\x05AB"
    frame = raw(HDLC(destination=(1, 17), source=16, control=0x10,
                     information=LLC() / APDU(_get_response(deep))))
    assert "malformed.truncated" in [f.code for f in findings_of(check(HDLC, frame))]


def test_long_lists_cost_memory_in_proportion() -> None:
    """Every element of a list used to keep all the bytes after it (Scapy's `original`): 20,000
    elements held 300 MB. Now each keeps its own bytes: a few kilobytes per element."""
    import gc
    import tracemalloc

    n = 6_000
    data = _get_response(b"\x01" + encode_length(n) + b"\x02\x02\x11\x05\x09\x01A" * n)
    gc.collect()
    tracemalloc.start()
    try:
        pkt = APDU(data)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert not findings_of(pkt)
    assert held < 3 * n * 1500, held


def test_too_many_elements_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    from layers import axdr

    assert axdr.MAX_ELEMENTS == 1 << 16
    monkeypatch.setattr(axdr, "MAX_ELEMENTS", 1000)  # the same code path, in less time
    data = _get_response(b"\x01" + encode_length(1010) + b"\x02\x01\x00" * 1010)
    pkt = check(APDU, data)
    found = [f for f in findings_of(pkt) if f.code == "axdr.too-many-elements"]
    assert found and "31 undecoded byte(s)" in found[0].message, found


def test_huge_counts_and_lengths_are_findings_not_allocations() -> None:
    for data in [b"\x01\x84\xff\xff\xff\xff\x11\x01", b"\x02\x84\x7f\xff\xff\xff",
                 b"\x09\x84\xff\xff\xff\xff", b"\x04\x84\xff\xff\xff\xff\x00",
                 b"\x13\x01\xff\xff\x11\x84\xff\xff\xff\xff"]:
        pkt = check(APDU, _get_response(data))
        assert findings_of(pkt), data.hex()
    # SEQUENCE OF counts beyond the list limit (set-response with-list, get-request with-list)
    for apdu in (b"\xc5\x05\xc1\x83\x01\x00\x01" + b"\x00" * 20,
                 b"\xc0\x03\xc1\x84\x7f\xff\xff\xff" + b"\x00" * 20):
        assert findings_of(check(APDU, apdu)), apdu.hex()


# -------------------------------------------------------------------------- nested APDUs

def _gateway(inner: bytes) -> bytes:
    return b"\xe6\x00\x00" + inner


def _signing(inner: bytes) -> bytes:
    return b"\xdf\x00\x08ABCDEFGH\x00\x00\x00" + encode_length(len(inner)) + inner + b"\x00"


def _aarq(inner: bytes) -> bytes:
    info = b"\x04" + encode_length(len(inner)) + inner
    comp = b"\xbe" + encode_length(len(info)) + info
    return b"\x60" + encode_length(len(comp)) + comp


@pytest.mark.parametrize("wrap", [_gateway, _signing, _aarq], ids=["gateway", "signing", "aarq"])
def test_apdus_nested_beyond_the_limit(wrap) -> None:
    inner = bytes.fromhex("C001C100080000010000FF0200")
    ok = inner
    for _ in range(MAX_NESTING - 1):
        ok = wrap(ok)
    assert "apdu.too-deep" not in [f.code for f in findings_of(check(APDU, ok))]
    deep = inner
    for _ in range(MAX_NESTING + 300):  # far beyond what the stack would take
        deep = wrap(deep)
    codes = [f.code for f in findings_of(check(APDU, deep))]
    assert "apdu.too-deep" in codes


# ------------------------------------------------------------------------ key context

class _FailingContext:
    """A key context whose deciphering raises (a bug or an unsupported suite in `keys`)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def decipher(self, envelope: object) -> object:
        raise self.exc


def test_a_failing_key_context_becomes_a_finding() -> None:
    glo = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
    secret = "000102030405060708090a0b0c0d0e0f"
    pkt = APDU(glo, key_context=_FailingContext(KeyError(secret)))
    found = [f for f in findings_of(pkt) if f.code == "security.decipher-failed"]
    assert found and secret not in found[0].message and "KeyError" in found[0].message
    assert pkt.deciphered is None


# ------------------------------------------------------------------------------------ CRC

@FAST
@given(data=st.binary(max_size=2100))
def test_crc16_matches_its_definition(data: bytes) -> None:
    assert crc16(data) == crc16_bitwise(data)
    assert crc16(b"123456789") == 0x906E
