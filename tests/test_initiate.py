"""InitiateRequest/Response, the conformance block, ConfirmedServiceError and ExceptionResponse.

Byte strings: notes §3.3 (Green Book example as in dlms-cosem tests, and the plaintext of the
published glo-initiateResponse, vectors.json #5), §3.6, the seed case (`0E 06 00 06`, F16477) and
the Gurux-produced interop corpus.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.packet import Packet

from layers.apdu.base import APDU
from layers.apdu.initiate import (
    CONFORMANCE_BITS,
    ConfirmedServiceError,
    ExceptionResponse,
    InitiateRequest,
    InitiateResponse,
    conformance_names,
)
from layers.expert import findings_of

try:  # tests/ as a package, or as a plain directory on sys.path
    from dissector.conftest import corpus_path
except ImportError:
    from conftest import corpus_path  # type: ignore[no-redef]

H = bytes.fromhex

GB_INITIATE_REQUEST = H("01011000112233445566778899AABBCCDDEEFF0000065F1F0400007E1F04B0")
GB_INITIATE_RESPONSE = H("0800065F1F0400007C1F04000007")
GURUX_INITIATE_REQUEST = H("01000000065F1F0400001E5DFFFF")
GURUX_INITIATE_RESPONSE = H("0800065F1F0400001E1D04000007")
SEED_ERROR = H("0E060006")

#: Notes §3.4: mask in the 24-bit value -> name.
CONFORMANCE_MASKS = {
    0x800000: "reserved-zero", 0x400000: "general-protection",
    0x200000: "general-block-transfer", 0x100000: "read", 0x080000: "write",
    0x040000: "unconfirmed-write", 0x020000: "delta-value-encoding", 0x010000: "reserved-seven",
    0x008000: "attribute0-supported-with-set", 0x004000: "priority-mgmt-supported",
    0x002000: "attribute0-supported-with-get", 0x001000: "block-transfer-with-get-or-read",
    0x000800: "block-transfer-with-set-or-write", 0x000400: "block-transfer-with-action",
    0x000200: "multiple-references", 0x000100: "information-report",
    0x000080: "data-notification", 0x000040: "access", 0x000020: "parameterized-access",
    0x000010: "get", 0x000008: "set", 0x000004: "selective-access",
    0x000002: "event-notification", 0x000001: "action",
}


def rebuilt(pkt: Packet) -> bytes:
    pkt.clear_cache()
    return raw(pkt)


def errors(pkt: Packet) -> list:
    return [f for f in findings_of(pkt) if f.severity == "error"]


def expected_names(value: int) -> list[str]:
    return [name for mask, name in CONFORMANCE_MASKS.items() if value & mask]


# --- InitiateRequest / InitiateResponse -----------------------------------------------------------

def test_green_book_initiate_request() -> None:
    req = APDU(GB_INITIATE_REQUEST)
    assert isinstance(req, InitiateRequest)
    assert req.dedicated_key == H("00112233445566778899AABBCCDDEEFF")
    assert req.response_allowed_present == 0 and req.response_allowed is None
    assert req.proposed_qos_present == 0 and req.proposed_qos is None
    assert req.proposed_dlms_version == 6
    assert req.conformance_tag == 0x5F1F and req.conformance_length == 4
    assert int(req.conformance) == 0x007E1F
    assert req.conformance_names == expected_names(0x007E1F)
    assert req.client_max_receive_pdu_size == 1200
    assert raw(req) == GB_INITIATE_REQUEST and rebuilt(req) == GB_INITIATE_REQUEST
    assert not findings_of(req)
    assert "dedicated-key" in req.mysummary()


def test_build_green_book_initiate_request() -> None:
    req = InitiateRequest(dedicated_key=H("00112233445566778899AABBCCDDEEFF"),
                          conformance=0x007E1F, client_max_receive_pdu_size=1200)
    assert raw(req) == GB_INITIATE_REQUEST


def test_vector_5_initiate_response() -> None:
    vectors = json.loads(corpus_path("vectors.json").read_text())
    vectors = vectors["vectors"] if isinstance(vectors, dict) else vectors
    plain = [H(v["plaintext_hex"]) for v in vectors
             if v.get("plaintext_hex", "").upper().startswith("08")]
    assert GB_INITIATE_RESPONSE in plain
    resp = APDU(GB_INITIATE_RESPONSE)
    assert isinstance(resp, InitiateResponse)
    assert resp.negotiated_qos is None and resp.negotiated_dlms_version == 6
    assert int(resp.conformance) == 0x007C1F
    assert resp.server_max_receive_pdu_size == 1024
    assert resp.vaa_name == 0x0007
    assert "LN" in resp.show(dump=True)
    assert raw(resp) == GB_INITIATE_RESPONSE and rebuilt(resp) == GB_INITIATE_RESPONSE
    built = InitiateResponse(conformance=0x007C1F, server_max_receive_pdu_size=1024)
    assert raw(built) == GB_INITIATE_RESPONSE


def test_gurux_initiate_pair() -> None:
    req = APDU(GURUX_INITIATE_REQUEST)
    assert req.dedicated_key is None and req.client_max_receive_pdu_size == 0xFFFF
    assert req.conformance_names == expected_names(0x001E5D)
    assert "get" in req.conformance_names and "access" in req.conformance_names
    resp = APDU(GURUX_INITIATE_RESPONSE)
    assert resp.conformance_names == expected_names(0x001E1D)
    for b, pkt in ((GURUX_INITIATE_REQUEST, req), (GURUX_INITIATE_RESPONSE, resp)):
        assert raw(pkt) == b and rebuilt(pkt) == b and not findings_of(pkt)


def test_optional_and_default_components() -> None:
    # response-allowed given explicitly (01 00 = FALSE), proposed QoS present (01 05).
    b = H("01000100010506" "5F1F0400001E5DFFFF")
    req = APDU(b)
    assert req.response_allowed_present == 1 and req.response_allowed == 0
    assert req.proposed_qos_present == 1 and req.proposed_qos == 5
    assert raw(req) == b and rebuilt(req) == b
    assert raw(InitiateRequest(response_allowed=0, proposed_qos=5, conformance=0x001E5D)) == b
    resp = APDU(H("080101065F1F0400001E1D0400FA00"))
    assert resp.negotiated_qos == 1 and resp.vaa_name == 0xFA00
    assert "SN" in resp.show(dump=True)


@pytest.mark.parametrize("bit", range(24))
def test_conformance_bit_numbering(bit: int) -> None:
    mask = 1 << (23 - bit)                   # bit 0 is the MSB of the first byte
    req = InitiateRequest(conformance=mask)
    assert H("5F1F0400") + mask.to_bytes(3, "big") in raw(req)
    back = APDU(raw(req))
    assert back.conformance_names == [CONFORMANCE_MASKS[mask]] == [CONFORMANCE_BITS[bit]]
    assert conformance_names(mask) == [CONFORMANCE_MASKS[mask]]
    assert CONFORMANCE_MASKS[mask] in back.show(dump=True)


def test_unusual_conformance_block_is_kept() -> None:
    b = H("0800065F1F050000001E1D0104000007")
    resp = APDU(b)
    assert resp.conformance_length == 5 and resp.conformance_bits == H("00001E1D")
    assert "initiate.bad-conformance-length" in {f.code for f in findings_of(resp)}
    assert raw(resp) == b and rebuilt(resp) == b


@settings(max_examples=200, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=40)),
       allowed=st.one_of(st.none(), st.integers(0, 1)),
       qos=st.one_of(st.none(), st.integers(-128, 127)),
       version=st.integers(0, 255), conformance=st.integers(0, 0xFFFFFF),
       pdu=st.integers(0, 0xFFFF))
def test_hypothesis_initiate_request(key: bytes | None, allowed: int | None, qos: int | None,
                                     version: int, conformance: int, pdu: int) -> None:
    req = InitiateRequest(dedicated_key=key, response_allowed=allowed, proposed_qos=qos,
                          proposed_dlms_version=version, conformance=conformance,
                          client_max_receive_pdu_size=pdu)
    b = raw(req)
    back = APDU(b)
    assert isinstance(back, InitiateRequest)
    assert (back.dedicated_key, back.response_allowed, back.proposed_qos) == (key, allowed, qos)
    assert (back.proposed_dlms_version, int(back.conformance),
            back.client_max_receive_pdu_size) == (version, conformance, pdu)
    assert rebuilt(back) == b and not findings_of(back)


@settings(max_examples=200, deadline=None)
@given(qos=st.one_of(st.none(), st.integers(-128, 127)), version=st.integers(0, 255),
       conformance=st.integers(0, 0xFFFFFF), pdu=st.integers(0, 0xFFFF),
       vaa=st.integers(0, 0xFFFF))
def test_hypothesis_initiate_response(qos: int | None, version: int, conformance: int, pdu: int,
                                      vaa: int) -> None:
    resp = InitiateResponse(negotiated_qos=qos, negotiated_dlms_version=version,
                            conformance=conformance, server_max_receive_pdu_size=pdu,
                            vaa_name=vaa)
    b = raw(resp)
    back = APDU(b)
    assert (back.negotiated_qos, back.negotiated_dlms_version, int(back.conformance),
            back.server_max_receive_pdu_size, back.vaa_name) == (qos, version, conformance,
                                                                 pdu, vaa)
    assert rebuilt(back) == b and not findings_of(back)


# --- ConfirmedServiceError ------------------------------------------------------------------------

def test_seed_case_deciphering_error() -> None:
    err = APDU(SEED_ERROR)
    assert isinstance(err, ConfirmedServiceError)
    assert err.description == "write / application-reference / deciphering-error"
    assert raw(err) == SEED_ERROR and rebuilt(err) == SEED_ERROR
    assert not findings_of(err)
    assert raw(ConfirmedServiceError(service=6, error_type=0, error_value=6)) == SEED_ERROR
    assert "deciphering-error" in err.show(dump=True)


SERVICES = ["initiate-error", "get-status", "get-name-list", "get-variable-attribute", "read",
            "write", "get-data-set-attribute", "get-ti-attribute", "change-scope", "start",
            "stop", "resume", "make-usable", "initiate-load", "load-segment", "terminate-load",
            "initiate-up-load", "up-load-segment", "terminate-up-load"]


@pytest.mark.parametrize("choice", range(1, 20))
def test_confirmed_service_choices(choice: int) -> None:
    err = APDU(bytes([0x0E, choice, 0x06, 0x02]))
    assert err.description == f"{SERVICES[choice - 1]} / initiate / incompatible-conformance"


#: Notes §3.6: ServiceError tag -> (name, values).
SERVICE_ERRORS = {
    0: ("application-reference", ["other", "time-elapsed", "application-unreachable",
                                  "application-reference-invalid",
                                  "application-context-unsupported",
                                  "provider-communication-error", "deciphering-error"]),
    1: ("hardware-resource", ["other", "memory-unavailable", "processor-resource-unavailable",
                              "mass-storage-unavailable", "other-resource-unavailable"]),
    2: ("vde-state-error", ["other", "no-dlms-context", "loading-data-set", "status-nochange",
                            "status-inoperable"]),
    3: ("service", ["other", "pdu-size", "service-unsupported"]),
    4: ("definition", ["other", "object-undefined", "object-class-inconsistent",
                       "object-attribute-inconsistent"]),
    5: ("access", ["other", "scope-of-access-violated", "object-access-invalid",
                   "hardware-fault", "object-unavailable"]),
    6: ("initiate", ["other", "dlms-version-too-low", "incompatible-conformance",
                     "pdu-size-too-short", "refused-by-the-VDE-handler"]),
    7: ("load-data-set", ["other", "primitive-out-of-sequence", "not-loadable",
                          "dataset-size-too-large", "not-awaited-segment",
                          "interpretation-failure", "storage-failure", "data-set-not-ready"]),
    9: ("task", ["other", "no-remote-control", "ti-stopped", "ti-running", "ti-unusable"]),
    10: ("other", ["other"]),
}


@pytest.mark.parametrize(("tag", "value"), [(t, v) for t, (_, vals) in SERVICE_ERRORS.items()
                                            for v in range(len(vals))])
def test_service_error_values(tag: int, value: int) -> None:
    err = APDU(bytes([0x0E, 0x05, tag, value]))
    name, values = SERVICE_ERRORS[tag]
    assert err.description == f"read / {name} / {values[value]}"


def test_gurux_service_error_shift_is_noted() -> None:
    task = APDU(H("0E050901"))
    assert task.description == "read / task / no-remote-control"
    change_scope = APDU(H("0E050800"))
    assert change_scope.description.startswith("read / change-scope / ")
    for pkt in (task, change_scope):
        assert [f.severity for f in findings_of(pkt)] == ["note"]
        assert findings_of(pkt)[0].code == "service-error.numbering"
    assert not findings_of(APDU(H("0E050A00")))
    assert "Gurux" in (ConfirmedServiceError.__doc__ or "")


def test_unknown_values_are_described() -> None:
    err = APDU(H("0E1E0B09"))
    assert err.description == "unknown-30 / unknown-11 / unknown-9"
    assert raw(err) == H("0E1E0B09")


# --- ExceptionResponse ----------------------------------------------------------------------------

@pytest.mark.parametrize(("b", "text"), [
    ("D80101", "service-not-allowed / operation-not-possible"),
    ("D80102", "service-not-allowed / service-not-supported"),
    ("D80203", "service-unknown / other-reason"),
    ("D80104", "service-not-allowed / pdu-too-long"),
    ("D80105", "service-not-allowed / deciphering-error"),
    ("D8010600000005", "service-not-allowed / invocation-counter-error"
                       " (expected invocation counter 5)"),
])
def test_exception_response(b: str, text: str) -> None:
    pkt = APDU(H(b))
    assert isinstance(pkt, ExceptionResponse)
    assert pkt.description == text
    assert raw(pkt) == H(b) and rebuilt(pkt) == H(b)
    assert not findings_of(pkt)


def test_exception_response_invocation_counter() -> None:
    pkt = APDU(H("D80106DEADBEEF"))
    assert pkt.invocation_counter == 0xDEADBEEF
    assert raw(ExceptionResponse(state_error=1, service_error=6, invocation_counter=0xDEADBEEF)) \
        == H("D80106DEADBEEF")
    assert APDU(H("D80102")).invocation_counter is None


# --- truncation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("b", [GB_INITIATE_REQUEST, GB_INITIATE_RESPONSE, GURUX_INITIATE_REQUEST,
                               SEED_ERROR, H("D8010600000005")], ids=lambda b: b[:2].hex())
def test_truncated_inputs_give_findings(b: bytes) -> None:
    for n in range(1, len(b)):
        pkt = APDU(b[:n])
        assert errors(pkt), (n, b[:n].hex())
        pkt.show(dump=True)
        pkt.summary()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from([0x01, 0x08, 0x0E, 0xD8]))
def test_random_bodies_never_raise(body: bytes, tag: int) -> None:
    pkt = APDU(bytes([tag]) + body)
    pkt.show(dump=True)
    pkt.summary()
    assert raw(pkt)
