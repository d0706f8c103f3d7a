"""keys.keystore and keys.secret: TOML keystores, flags, checks, and keys that never show."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keys.agreement import public_key_bytes
from keys.keystore import (
    Keystore,
    KeystoreError,
    MeterKeys,
    check_keystore,
    default_keystore_path,
    keystore_from_flags,
    load_keystore,
)
from keys.secret import SecretKey, parse_key_material

EK = "000102030405060708090A0B0C0D0E0F"
AK = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
BEK = "0F0E0D0C0B0A09080706050403020100"
KEK = "101112131415161718191A1B1C1D1E1F"
DK = "00112233445566778899AABBCCDDEEFF"
EK256 = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF"
TEXT_KEY = "MYDUMMYGLOBALKEY"
SERVER_ST, CLIENT_ST, OTHER_ST = "4D4D4D0000BC614E", "4142434445464748", "4B464D1010000023"


def _ecc_files(tmp_path: Path) -> tuple[str, str]:
    """A client signing key file (PEM) and a server public key (hex x||y)."""
    client = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "client.pem").write_bytes(client.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ec.generate_private_key(ec.SECP256R1())
    return "client.pem", public_key_bytes(server.public_key()).hex()


SAMPLE = f"""
[[meter]]
name = "lab-meter-1"
system_title = "{SERVER_ST}"
client_system_title = "{CLIENT_ST}"
ek = "{EK}"
ak = "{AK}"
bek = "{BEK}"
kek = "{KEK}"
dedicated = "{DK}"
hls_secret = "text:Gurux"
client_signing_key = "{{client_key}}"
server_public_key = "{{server_pub}}"

[[meter]]
name = "any-meter"
ek = "text:{TEXT_KEY}"
ak = "text:{TEXT_KEY}"

[[meter]]
name = "suite2-meter"
system_title = "{OTHER_ST}"
ek = "{EK256}"
ak = "{EK256}"

[[meter]]
name = "lab-meter-1-any-client"
system_title = "{SERVER_ST}"
ek = "{EK}"
"""

ALL_SECRETS = [EK, AK, BEK, KEK, DK, EK256, TEXT_KEY, TEXT_KEY.encode().hex(), "Gurux",
               b"Gurux".hex()]


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def _assert_hidden(text: str) -> None:
    for secret in ALL_SECRETS:
        assert secret.lower() not in text.lower(), f"key material in: {text!r}"


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    client_key, server_pub = _ecc_files(tmp_path)
    return _write(tmp_path, SAMPLE.format(client_key=client_key, server_pub=server_pub))


def test_sample_keystore(sample: Path) -> None:
    ks = load_keystore(sample)
    assert [e.name for e in ks] == ["lab-meter-1", "any-meter", "suite2-meter",
                                    "lab-meter-1-any-client"]
    lab = ks.by_name("lab-meter-1")
    assert lab is not None
    assert lab.system_title == bytes.fromhex(SERVER_ST)
    assert lab.client_system_title == bytes.fromhex(CLIENT_ST)
    assert (lab.ek, lab.ak, lab.bek, lab.kek, lab.dedicated) == tuple(
        bytes.fromhex(h) for h in (EK, AK, BEK, KEK, DK))
    assert lab.hls_secret is not None and lab.hls_secret.value == b"Gurux"
    assert lab.ek is not None and lab.ek.name == "lab-meter-1/ek"
    assert isinstance(lab.client_signing_key, ec.EllipticCurvePrivateKey)
    assert lab.signing_public_key("client") is not None
    assert lab.signing_public_key("server") is lab.server_public_key
    assert lab.agreement_public_key("client") is None
    anyone = ks.by_name("any-meter")
    assert anyone is not None and anyone.ek is not None and anyone.ek.value == TEXT_KEY.encode()
    assert len(ks.entries[2].ek or b"") == 32
    assert ks.warnings == () and check_keystore(sample) == []


def test_for_titles_most_specific_first(sample: Path) -> None:
    ks = load_keystore(sample)
    server, client = bytes.fromhex(SERVER_ST), bytes.fromhex(CLIENT_ST)

    def names(s: bytes | None, c: bytes | None) -> list[str]:
        return [e.name for e in ks.for_titles(s, c)]

    assert names(server, client) == ["lab-meter-1", "lab-meter-1-any-client", "any-meter"]
    assert names(server, b"XXXXXXXX") == ["lab-meter-1-any-client", "any-meter"]
    assert names(bytes.fromhex(OTHER_ST), None) == ["suite2-meter", "any-meter"]
    assert names(b"unknown!", client) == ["any-meter"]
    # Nothing known: the fewer titles an entry pins, the earlier it comes.
    assert names(None, None) == ["any-meter", "suite2-meter", "lab-meter-1-any-client",
                                 "lab-meter-1"]


def test_candidates_over_all_entries(sample: Path) -> None:
    ks = load_keystore(sample)
    eks = ks.candidates("ek")
    assert [k.name for k in eks] == ["lab-meter-1/ek", "any-meter/ek", "suite2-meter/ek"]
    assert ks.candidates("global-unicast") == eks
    assert [k.name for k in ks.candidates("global-broadcast")] == ["lab-meter-1/bek"]
    assert [k.name for k in ks.candidates("dedicated")] == ["lab-meter-1/dedicated"]
    with pytest.raises(ValueError, match="unknown key kind"):
        ks.candidates("guek")


def test_merged_and_flags() -> None:
    flags = keystore_from_flags(ek=EK, ak=f"text:{TEXT_KEY}", bek=BEK, kek=KEK, dk=DK,
                                hls_secret="text:Gurux", client_title=CLIENT_ST,
                                server_title=SERVER_ST)
    (entry,) = flags.entries
    assert entry.name == "cli" and entry.dedicated == bytes.fromhex(DK)
    assert entry.system_title == bytes.fromhex(SERVER_ST)
    assert entry.client_system_title == bytes.fromhex(CLIENT_ST)
    assert entry.ak is not None and entry.ak.value == TEXT_KEY.encode()
    assert keystore_from_flags().entries == ()
    both = flags.merged(Keystore([MeterKeys("x", ek=bytes(16))]))
    assert [e.name for e in both] == ["cli", "x"]
    _assert_hidden(repr(flags) + str(flags) + repr(both))


@pytest.mark.parametrize(("flag", "kwargs", "message"), [
    ("--ek", {"ek": "00zz"}, "not valid hex"),
    ("--ak", {"ak": EK[:-2]}, "got 15"),
    ("--dk", {"dk": EK + "00"}, "got 17"),
    ("--server-title", {"server_title": "0102"}, "must be 8 bytes"),
    ("--hls-secret", {"hls_secret": "text:"}, "empty"),
])
def test_flag_errors(flag: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(KeystoreError) as info:
        keystore_from_flags(**kwargs)
    assert flag in str(info.value) and message in str(info.value)
    _assert_hidden(str(info.value))


def test_default_keystore_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DLMS_KEYS", raising=False)
    assert default_keystore_path() is None
    monkeypatch.setenv("DLMS_KEYS", "")
    assert default_keystore_path() is None
    monkeypatch.setenv("DLMS_KEYS", str(tmp_path / "k.toml"))
    assert default_keystore_path() == tmp_path / "k.toml"


# --- check_keystore: one case per problem --------------------------------------------------

CHECKS = [
    (f'[[meter]]\nname = "m"\nek = "{EK[:-1]}Z"\n', "error", "ek", "not valid hex"),
    (f'[[meter]]\nname = "m"\nek = "{EK[:-1]}"\n', "error", "ek", "odd number of hex digits"),
    (f'[[meter]]\nname = "m"\nak = "{EK[:-2]}"\n', "error", "ak",
     "16 bytes (suites 0/1) or 32 bytes (suite 2), got 15"),
    (f'[[meter]]\nname = "m"\nbek = "{EK256}00"\n', "error", "bek", "got 33"),
    ('[[meter]]\nname = "m"\nsystem_title = "4D4D4D0000BC61"\n', "error", "system_title",
     "system title must be 8 bytes, got 7"),
    ('[[meter]]\nname = "m"\nclient_system_title = "text:ABCDEFGHI"\n', "error",
     "client_system_title", "got 9"),
    (f'[[meter]]\nname = "m"\nguek = "{EK}"\n', "error", None, "unknown key 'guek'"),
    (f'[[meter]]\nname = "m"\nek = "{EK}"\n[[meter]]\nname = "m"\nek = "{BEK}"\n', "error",
     "name", "duplicate name (also meter #1)"),
    (f'[[meter]]\nname = "a"\nsystem_title = "{SERVER_ST}"\n'
     f'[[meter]]\nname = "b"\nsystem_title = "{SERVER_ST}"\n', "warning", "system_title",
     f"same system_title {SERVER_ST} as 'a'"),
    ('[[meter]]\nname = "m"\nek = 1234\n', "error", "ek", "must be a string"),
    ('[[meter]]\nname = ""\n', "error", "name", "non-empty"),
    ('[[meter]]\nname = "m"\nhls_secret = "text:\u00e9t\u00e9"\n', "error", "hls_secret",
     "not ASCII"),
    ('[[meter]]\nname = "m"\nclient_signing_key = "missing.pem"\n', "error",
     "client_signing_key", "cannot read key file"),
    ('[[meter]]\nname = "m"\nserver_public_key = "0011"\n', "error", "server_public_key",
     "64 or 96 bytes"),
    ('[[meters]]\nname = "m"\n', "error", None, "unknown top-level key 'meters'"),
    ('meter = "x"\n', "error", None, "array of tables"),
    ('[[meter]\nname = "m"\n', "error", None, "TOML syntax error"),
    ("", "warning", None, "no [[meter]] entries"),
]


@pytest.mark.parametrize(("text", "severity", "field", "message"), CHECKS)
def test_check_keystore_problems(tmp_path: Path, text: str, severity: str, field: str | None,
                                 message: str) -> None:
    path = _write(tmp_path, text)
    problems = check_keystore(path)
    assert len(problems) == 1, problems
    (p,) = problems
    assert (p.severity, p.field) == (severity, field)
    assert message in p.message
    assert str(path) in str(p)
    if text.startswith("[[meter]]"):
        assert "meter #1" in str(p) or "meter #2" in str(p)
    _assert_hidden(str(p) + repr(p))
    if severity == "error":
        with pytest.raises(KeystoreError) as info:
            load_keystore(path)
        assert str(path) in str(info.value) and message in str(info.value)
        _assert_hidden(str(info.value))
    else:
        assert load_keystore(path).warnings == tuple(problems)


def test_every_bad_field_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, f'[[meter]]\nname = "m"\nek = "zz"\nak = "{EK[:4]}"\nx = 1\n')
    assert sorted(str(p.field) for p in check_keystore(path)) == ["None", "ak", "ek"]


def test_group_readable_file_is_flagged(sample: Path) -> None:
    if os.name != "posix":
        pytest.skip("file modes are POSIX")
    sample.chmod(0o644)
    (p,) = check_keystore(sample)
    assert p.severity == "warning"
    assert "readable by group/others (mode 0644)" in p.message and "chmod 600" in p.message
    assert load_keystore(sample).warnings == (p,)
    sample.chmod(0o640)
    assert len(check_keystore(sample)) == 1
    sample.chmod(0o600)
    assert check_keystore(sample) == []


def test_missing_file(tmp_path: Path) -> None:
    (p,) = check_keystore(tmp_path / "nope.toml")
    assert p.severity == "error" and "cannot read" in p.message
    with pytest.raises(KeystoreError, match=r"nope\.toml"):
        load_keystore(tmp_path / "nope.toml")


# --- keys never show -----------------------------------------------------------------------

def test_no_key_bytes_in_any_output(sample: Path) -> None:
    ks = load_keystore(sample)
    texts = [repr(ks), str(ks), *(repr(e) for e in ks), *(str(e) for e in ks)]
    for kind in ("ek", "ak", "bek", "kek", "dedicated", "hls_secret"):
        for key in ks.candidates(kind):
            texts += [repr(key), str(key), f"{key}", f"{key!r}"]
    for text in texts:
        _assert_hidden(text)
    assert "lab-meter-1/ek" in repr(ks)


def test_secret_key() -> None:
    key = SecretKey(bytes.fromhex(EK), "lab/ek")
    fp = hashlib.sha256(bytes.fromhex(EK)).digest()[:4].hex()
    assert key.fingerprint == fp
    assert repr(key) == f"SecretKey('lab/ek', 16 bytes, sha256:{fp})"
    assert str(key) == f"lab/ek [{fp}]"
    assert key == bytes.fromhex(EK) and key == SecretKey(bytes.fromhex(EK), "other")
    assert key != SecretKey(bytes(16)) and len(key) == 16 and bytes(key) == key.value
    assert len({key, SecretKey(bytes.fromhex(EK), "other")}) == 1
    assert SecretKey.from_spec("text:ABC").value == b"ABC"
    assert parse_key_material("0x00 11:22-33_44") == bytes.fromhex("0011223344")
    with pytest.raises(ValueError) as info:
        SecretKey.from_spec(EK[:-1] + "Q", "lab/ek")
    assert "lab/ek" in str(info.value)
    _assert_hidden(str(info.value))
    with pytest.raises(TypeError):
        SecretKey(EK, "lab/ek")  # type: ignore[arg-type]


def test_meter_keys_wraps_bytes() -> None:
    m = MeterKeys("m1", system_title=bytes(8), ek=bytes(16), ak=SecretKey(bytes(16)))
    assert isinstance(m.ek, SecretKey) and m.ek.name == "m1/ek"
    assert m.ak is not None and m.ak.name == "m1/ak"
    with pytest.raises(KeystoreError, match="system_title must be 8 bytes"):
        MeterKeys("m2", system_title=bytes(7))
