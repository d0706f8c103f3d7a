"""AARQ key search: once a meter's address has answered with its title, its keys are tried first
on the next association there. Only the order of the search changes, never what is reported."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

import dissector.tracker as tracker
import keys.context as context
from dissector.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from generate import generate


@pytest.fixture(scope="module")
def headend(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A head-end capture of 3,000 APDUs: 8 meters with their own keys, each seen in several
    associations over separate TCP connections."""
    return generate(3000, tmp_path_factory.mktemp("headend"), meters=8)["files"]


def _read(files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    tries = 0
    real = context._try

    def counted(*args: object, **kwargs: object) -> bytes | None:
        nonlocal tries
        tries += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(context, "_try", counted)
    out = io.StringIO()
    assert main(["read", files[".pcap"], "--keys", files[".keys.toml"], "--port", "4061:hdlc",
                 "--json", "--stats"], out) == 0
    return out.getvalue(), tries


def test_hint_changes_the_work_not_the_output(headend: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    hinted, fewer = _read(headend, monkeypatch)
    links = iter(range(10**9))
    monkeypatch.setattr(tracker, "address_of", lambda link: f"unique {next(links)}")
    plain, more = _read(headend, monkeypatch)
    assert hinted == plain
    assert '"key_name": "meter-' in hinted and '"tag_verified": false' not in hinted
    verified = hinted.count('"tag_verified": true')  # one successful try each
    assert fewer - verified < (more - verified) / 2


def test_a_shared_key_is_named_as_without_the_hint() -> None:
    """Two keystore entries with the same EK: whichever the hint tries first, the key is named
    after the first entry in keystore order, as the search without a hint names it."""
    from keys.keystore import Keystore, MeterKeys
    from keys.secret import SecretKey

    ek = bytes(range(16))
    first = MeterKeys(name="first", system_title=b"AAAAAAAA", ek=SecretKey(ek, "first/ek"))
    second = MeterKeys(name="second", system_title=b"BBBBBBBB", ek=SecretKey(ek, "second/ek"))
    ctx = context.KeyContext(Keystore([first, second]))
    ctx.association.server_title_hint = b"BBBBBBBB"
    primary = ctx.candidates("global-unicast")
    order = ctx._search_order(primary)
    assert [c.name for c in order] == ["second/ek", "first/ek"]
    assert ctx._canonical(order[0], primary).name == "first/ek"
