"""keys.wrap: RFC 3394 vectors, the key_transfer parameter and its errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.secret import SecretKey
from keys.wrap import (
    KEY_ID_NAMES,
    KeyTransferFormatError,
    UnwrapError,
    build_key_transfer,
    key_id_name,
    parse_key_transfer,
    unwrap_key,
    unwrap_key_transfer,
    wrap_key,
)


def b(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr)


def test_key_wrap_vectors(vectors: list[dict]) -> None:
    entries = [v for v in vectors if v["kind"] == "key_wrap"]
    assert entries
    for v in entries:
        kek, key, wrapped = b(v["key_hex"]), b(v["plaintext_hex"]), b(v["wrapped_key_hex"])
        assert wrap_key(kek, key) == wrapped
        assert unwrap_key(SecretKey(kek, "kek"), wrapped) == key
        param = b(v["key_transfer_method_parameter"])
        assert parse_key_transfer(param) == [(0, wrapped)]
        assert build_key_transfer([(0, wrapped)]) == param
        ((key_id, learned),) = unwrap_key_transfer(kek, param)
        assert key_id == 0 and learned == key
        assert learned.name == "key_transfer/global-unicast-encryption-key"


@pytest.mark.parametrize(("kek", "key", "wrapped"), [
    # RFC 3394 §4.3 and §4.6 (256-bit KEK, as suite 2 uses)
    ("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
     "00112233445566778899AABBCCDDEEFF",
     "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"),
    ("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
     "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
     "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"),
])
def test_rfc3394_256_bit_kek(kek: str, key: str, wrapped: str) -> None:
    assert wrap_key(b(kek), b(key)) == b(wrapped)
    assert unwrap_key(b(kek), b(wrapped)) == b(key)


def test_unwrap_with_wrong_kek_names_no_key() -> None:
    kek, other = bytes(range(16)), bytes(range(1, 17))
    wrapped = wrap_key(kek, bytes(16))
    with pytest.raises(UnwrapError) as info:
        unwrap_key(SecretKey(other, "meter-1/kek"), wrapped)
    assert "meter-1/kek" in str(info.value)
    assert other.hex() not in str(info.value).lower()
    with pytest.raises(UnwrapError):
        unwrap_key(other, wrapped[:20])


def test_key_id_names() -> None:
    assert [KEY_ID_NAMES[i] for i in range(4)] == [
        "global-unicast-encryption-key", "global-broadcast-encryption-key",
        "authentication-key", "master-key"]
    assert key_id_name(9) == "key-id-9"


def test_several_keys_in_one_transfer() -> None:
    kek = bytes(range(16))
    new = {0: bytes([1]) * 16, 1: bytes([2]) * 16, 2: bytes([3]) * 16, 3: bytes([4]) * 16}
    param = build_key_transfer([(i, wrap_key(kek, k)) for i, k in new.items()])
    assert param[:2] == b"\x01\x04"
    assert {i: k.value for i, k in unwrap_key_transfer(kek, param)} == new


@pytest.mark.parametrize(("data", "message"), [
    ("", "truncated before array"),
    ("0201", "expected array"),
    ("0101", "truncated before structure 0"),
    ("01010203", "structure 0 must have 2 elements"),
    ("010102021100", "expected enum key_id"),
    ("0101020216000418", "expected octet-string"),
    ("01010202160009180102", "24 bytes declared"),
    ("0101020216000900FF", "1 bytes after the array"),
    ("01010202160009", "wrapped key length of structure 0"),
])
def test_malformed_key_transfer(data: str, message: str) -> None:
    with pytest.raises(KeyTransferFormatError, match=message):
        parse_key_transfer(b(data))


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=20))
def test_build_parse_round_trip(entries: list[tuple[int, bytes]]) -> None:
    assert parse_key_transfer(build_key_transfer(entries)) == entries
