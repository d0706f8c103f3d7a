"""`decode`: every pasted line is accounted for, by a record of its own frames or APDU (a frame
it cuts short included) or by a finding that names it; on M-Bus and HDLC frames of the corpus,
whole and cut at random places."""

from __future__ import annotations

import io
import json
import random

from dissector.cli.main import main


def _decode(lines: list[str]) -> list[dict]:
    out = io.StringIO()
    assert main(["decode", "--json", *lines], out) == 0
    return [json.loads(x) for x in out.getvalue().splitlines()]


def _accounted(rows: list[dict], count: int) -> set[int]:
    """The line numbers that a record or a finding accounts for."""
    seen: set[int] = set()
    for row in rows:
        seen.update(row.get("frames", []))
        for finding in row.get("expert", []):
            words = finding["message"].split(":", 1)[0].split()
            if len(words) == 2 and words[0] in ("line", "frame") and words[1].isdigit():
                seen.add(int(words[1]))
    return seen & set(range(1, count + 1))


def _corpus_lines(manifest: dict) -> list[str]:
    items = [i for i in manifest["items"] if i.get("hex") and (
        str(i.get("transport", "")).startswith(("M-Bus", "HDLC")))]
    assert len(items) >= 20
    return [i["hex"] for i in items]


def test_a_truncated_mbus_long_frame_is_a_record_with_its_finding(manifest: dict) -> None:
    """The M-Bus long frame of a corpus item cut after six bytes (68 L L 68 C A): a record of
    its own, with the layer's truncation finding, on the line it came from."""
    item = next(i for i in manifest["items"]
                if str(i.get("transport", "")).startswith("M-Bus") and i.get("hex"))
    cut = item["hex"][:12]
    rows = _decode(["C0010000080000010000FF0200", cut])
    records = [r for r in rows if "apdu" in r]
    assert [r["frames"] for r in records] == [[1], [2]]
    assert records[1]["apdu"].startswith("mbus")
    assert "mbus.truncated" in [f["code"] for f in records[1]["expert"]]


def test_every_line_is_accounted_for(manifest: dict) -> None:
    lines = _corpus_lines(manifest)
    rng = random.Random(4059)
    mutated = []
    for _ in range(300):
        data = bytes.fromhex(rng.choice(lines))
        if rng.random() < 0.5:
            data = data[:rng.randrange(1, len(data))]
        else:
            pos = rng.randrange(len(data))
            data = data[:pos] + bytes([rng.randrange(256)]) + data[pos + 1:]
        mutated.append(data.hex())
    for start in range(0, len(mutated), 50):  # several pasted inputs of 50 lines
        chunk = mutated[start:start + 50]
        rows = _decode(chunk)
        missing = set(range(1, len(chunk) + 1)) - _accounted(rows, len(chunk))
        assert not missing, [chunk[n - 1][:40] for n in sorted(missing)]
