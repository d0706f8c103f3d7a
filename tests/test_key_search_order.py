"""AARQ key search: once a meter's address has answered with its title, its keys are tried first
on the next association there; keys whose first byte of keystream does not give the envelope's
inner tag are tried last. Only the order of the search changes, never what is reported."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

import dissector.analysis.tracker as tracker
import keys.search as search
from dissector.cli.main import main
from keys.context import KeyContext
from keys.gcm import Opening
from keys.search import canonical

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from generate import generate


@pytest.fixture(scope="module")
def headend(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A head-end capture of 3,000 APDUs: 8 meters with their own keys, each seen in several
    associations over separate TCP connections."""
    return generate(3000, tmp_path_factory.mktemp("headend"), meters=8)["files"]


def _read(files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int, int]:
    """The output, the keys looked at (one byte of keystream each) and the tags computed."""
    looked = tries = 0
    real_try, real_first = search._try, Opening.first_byte

    def counted_try(*args: object, **kwargs: object) -> bytes | None:
        nonlocal tries
        tries += 1
        return real_try(*args, **kwargs)

    def counted_first(*args: object) -> int | None:
        nonlocal looked
        looked += 1
        return real_first(*args)

    monkeypatch.setattr(search, "_try", counted_try)
    monkeypatch.setattr(Opening, "first_byte", counted_first)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)  # --json: the statistics come on stderr
    assert main(["read", files[".pcap"], "--keys", files[".keys.toml"], "--port", "4061:hdlc",
                 "--json", "--stats"], out) == 0
    return out.getvalue(), looked, tries


def test_hint_changes_the_work_not_the_output(headend: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    hinted, fewer, _ = _read(headend, monkeypatch)
    links = iter(range(10**9))
    monkeypatch.setattr(tracker, "address_of", lambda link: f"unique {next(links)}")
    plain, more, _ = _read(headend, monkeypatch)
    assert hinted == plain
    assert '"key_name": "meter-' in hinted and '"tag_verified": false' not in hinted
    assert fewer < more / 2


def test_first_byte_changes_the_work_not_the_output(headend: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the plain order (every key's tag computed until one verifies): the same output,
    and fewer than half the tags computed in vain."""
    ordered, _, few = _read(headend, monkeypatch)
    monkeypatch.setattr(search, "_likely_first", lambda order, opening, first: iter(order))
    plain, _, many = _read(headend, monkeypatch)
    assert ordered == plain
    verified = ordered.count('"tag_verified": true')  # one successful tag each
    assert '"key_name": "meter-' in ordered and '"tag_verified": false' not in ordered
    assert few - verified < (many - verified) / 2


def test_a_shared_key_is_named_as_without_the_hint() -> None:
    """Two keystore entries with the same EK: whichever the hint tries first, the key is named
    after the first entry in keystore order, as the search without a hint names it."""
    from keys.keystore import Keystore, MeterKeys
    from keys.secret import SecretKey

    ek = bytes(range(16))
    first = MeterKeys(name="first", system_title=b"AAAAAAAA", ek=SecretKey(ek, "first/ek"))
    second = MeterKeys(name="second", system_title=b"BBBBBBBB", ek=SecretKey(ek, "second/ek"))
    ctx = KeyContext(Keystore([first, second]))
    ctx.association.server_title_hint = b"BBBBBBBB"
    primary = ctx.candidates("global-unicast")
    order = ctx._search_order(primary, b"CCCCCCCC")  # an AARQ: the client's IV title
    assert [c.name for c in order] == ["second/ek", "first/ek"]
    assert canonical(order[0], primary).name == "first/ek"
    ctx.association.server_title_hint = None
    order = ctx._search_order(primary, b"BBBBBBBB")  # an AARE: the server's own title
    assert [c.name for c in order] == ["second/ek", "first/ek"]
    ctx.association.server_title = b"AAAAAAAA"  # known: the keystore's own ranking
    assert ctx._search_order(primary, b"BBBBBBBB") is primary
