"""The fast path (records made without Scapy Packets, `dissector.analysis.fastpath`) gives
exactly what the Packet path gives: `read` in summary, `-V` and `--json` with `--stats` (and
`-x` with the `-w` export on the head-end captures), on
every capture of the corpus (with its keys), the seed case and generated head-end captures
(ciphered with the right keys, the same without keys, and in the clear), byte for byte. And
it is really taken: most APDUs of the head-end captures are fast records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, ROOT, corpus_path
from hypothesis import given
from hypothesis import strategies as st

from dissector.analysis import fastpath
from dissector.analysis.capture import dissect_capture
from dissector.analysis.pipeline import Dissector
from dissector.cli.main import main
from dissector.output.jsonout import encode, findings_text, record_json, record_text, string_text
from dissector.output.redact import withhold_keys
from keys.keystore import Keystore, load_keystore
from layers.expert import Finding

sys.path.insert(0, str(ROOT / "bench"))
import generate

MODES = ([], ["-V"], ["--json"])


def _interop_args(scenario: Path) -> list[str]:
    k = json.loads((scenario / "keys.json").read_text())
    args = ["--ek", k["ek"], "--ak", k["ak"]]
    if k.get("broadcast_key"):
        args += ["--bek", k["broadcast_key"]]
    if k.get("hls_secret"):
        args += ["--hls-secret", "text:" + k["hls_secret"]]
    return args


def _cases() -> list[tuple[str, list[str]]]:
    cases = [(p.name, [str(p)]) for p in sorted(CORPUS.glob("*.pcap*"))]
    for scenario in sorted(CORPUS.glob("interop/*/")):
        if not (scenario / "keys.json").exists():
            continue
        for cap in sorted(scenario.glob("capture.pcap*")):
            cases.append((f"interop-{scenario.name}", [str(cap), *_interop_args(scenario)]))
    cases.append(("seed-case", [str(ROOT / "pcaps" / "seed-case.pcap"), "--keys",
                                str(ROOT / "pcaps" / "seed-case.keys.toml")]))
    return cases


def _read(args: list[str], fast: bool, capsys: pytest.CaptureFixture[str],
          monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(Dissector, "FAST_PATH", fast)
    capsys.readouterr()
    status = main(["read", *args, "--stats"])
    out, err = capsys.readouterr()
    return f"status {status}\n{out}\n--- stderr\n{err}"


def _same(args: list[str], capsys: pytest.CaptureFixture[str],
          monkeypatch: pytest.MonkeyPatch) -> None:
    for mode in MODES:
        packets = _read([*args, *mode], False, capsys, monkeypatch)
        fast = _read([*args, *mode], True, capsys, monkeypatch)
        assert fast == packets, f"fast path differs in mode {mode or 'summary'}"


@pytest.mark.parametrize("name,args", _cases() if CORPUS.exists() else [],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_corpus_fast_equals_packets(name: str, args: list[str],
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    corpus_path()
    _same(args, capsys, monkeypatch)


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    out = tmp_path_factory.mktemp("bench")
    return {"ciphered": generate.generate(1500, out, meters=32),
            "plain": generate.generate(1500, out, meters=32, plain=True)}


def _count_fast(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """[records the fast path made, records it declined] while a test runs."""
    seen = [0, 0]
    real = fastpath.dissect_fast

    def counted(data: bytes, ctx: object) -> object:
        got = real(data, ctx)  # type: ignore[arg-type]
        seen[0 if isinstance(got, fastpath.FastView) else 1] += 1
        return got

    monkeypatch.setattr("dissector.analysis.pipeline.dissect_fast", counted)
    return seen


@pytest.mark.parametrize("kind,keys", [("ciphered", True), ("ciphered", False),
                                       ("plain", False)])
def test_headend_fast_equals_packets(captures: dict, kind: str, keys: bool, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    headend = captures[kind]
    files = headend["files"]
    args = [files[".pcap"], "--port", "4061:hdlc"]
    if keys:
        args += ["--keys", files[".keys.toml"]]
    seen = _count_fast(monkeypatch)
    _same(args, capsys, monkeypatch)
    exports = []
    for fast in (False, True):  # the -w export (APDU bytes, JSON comments) and -x dumps
        path = tmp_path / f"export-{fast}.pcapng"
        text = _read([*args, "-x", "-w", str(path)], fast, capsys, monkeypatch)
        exports.append((text, path.read_bytes()))
    assert exports[0] == exports[1]
    # every APDU but the AARQ/AARE/RLRQ/RLRE (ACSE stays on the Packet path) and HDLC
    # frames without an APDU: the generator's own counts
    counts = headend["counts"]
    acse = sum(v for k, v in counts.items() if k in ("apdu.60", "apdu.61", "apdu.62",
                                                      "apdu.63"))
    apdus = sum(v for k, v in counts.items() if k.startswith("apdu."))
    made = seen[0] // (len(MODES) + 1)
    assert made >= 0.95 * (apdus - acse), (seen, apdus, acse)


@pytest.mark.parametrize("kind", ["ciphered", "plain"])
def test_record_text_is_the_encoded_record(captures: dict, kind: str) -> None:
    """`record_text` (a fast record's line made from text) is `encode(record_json(rec))`
    after the number, on every record of a head-end capture, the redaction step done; so a
    member added to `record_json` fails here until `record_text` writes it too."""
    files = captures[kind]["files"]
    keystore = load_keystore(files[".keys.toml"]) if kind == "ciphered" else Keystore()
    recs = list(dissect_capture(files[".pcap"], Dissector(keystore), {4061: "hdlc"}))
    fast = 0
    for rec in recs:
        withhold_keys(rec)
        want = encode(record_json(rec)).replace(f'{{"number": {rec.number}, ', "", 1)
        assert record_text(rec) == want, rec.number
        fast += rec.fast is not None and rec.fast.fields_text() is not None
    assert fast > 0.8 * len(recs)  # the text path, not the fallback, was taken


@given(st.text())
def test_string_text_is_the_encoders(text: str) -> None:
    """The quick JSON string of a text is what the encoder writes, whatever the text holds
    (quotes, backslashes, control characters, DEL, non-ASCII)."""
    assert string_text(text) == encode(text)


@given(st.lists(st.builds(Finding, st.sampled_from(["error", "warning", "note", "chat"]),
                          st.text(), st.text()), min_size=1))
def testfindings_text_is_the_encoded_list(findings: list[Finding]) -> None:
    assert findings_text(findings) == encode([f.as_dict() for f in findings])
