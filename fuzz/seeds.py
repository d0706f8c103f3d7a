"""Seed corpora for the fuzz targets, built at run time from `pcaps/` and the shared corpus (the
corpus is read in place and never copied into the repository).

    python fuzz/seeds.py decode OUT_DIR     # one file per seed
    python fuzz/seeds.py capture OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from harness import CORPUS, ROOT, capgen

SEP = b"\xa5\x5a"
MAX_CAPTURE = 64 * 1024  # larger captures are cut to their first records
MAX_RECORDS = 300


def _hex(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        return None


def capture_files() -> list[Path]:
    files = sorted((ROOT / "pcaps").glob("*.pcap*"))
    if CORPUS.is_dir():
        files += sorted(CORPUS.glob("*.pcap*")) + sorted(CORPUS.glob("interop/*/capture.pcap*"))
    return files


def _pdu_streams() -> Iterator[list[bytes]]:
    """The PDUs of each capture, per link and direction, as `read` cuts them."""
    from dissector.analysis.capture import iter_pdus
    from dissector.stages import Pdu

    for path in capture_files():
        by_link: dict[tuple[str, str], list[bytes]] = {}
        try:
            for item in iter_pdus(str(path)):
                if isinstance(item, Pdu):
                    by_link.setdefault((item.link, item.transport), []).append(item.data)
        except Exception:  # noqa: BLE001 - a seed source that cannot be read is skipped
            continue
        yield from by_link.values()


def decode_seeds() -> Iterator[bytes]:
    """Lines for `decode`: manifest items (their frames, their plaintext) and runs of PDUs."""
    manifest = CORPUS / "manifest.json"
    if manifest.is_file():
        for item in json.loads(manifest.read_text())["items"]:
            frames = [_hex(f.get("hex")) for f in item.get("frames", [])]
            plain = [_hex(f.get("plaintext_hex")) for f in item.get("frames", [])]
            for group in ([_hex(item.get("hex"))], frames, plain):
                lines = [x for x in group if x]
                if lines:
                    yield b"\x01" + SEP.join(lines)
    for pdus in _pdu_streams():
        for start in range(0, min(len(pdus), 60), 6):
            yield b"\x01" + SEP.join(pdus[start : start + 6])


def capture_seeds() -> Iterator[bytes]:
    """Whole captures (cut to their first records when large) and PDU runs re-captured."""
    from scapy.utils import RawPcapReader

    for path in capture_files():
        data = path.read_bytes()
        if len(data) > MAX_CAPTURE:
            with RawPcapReader(str(path)) as reader:
                linktype = getattr(reader, "linktype", 1)
                records = []
                for i, (rec, _meta) in enumerate(reader):
                    if i >= MAX_RECORDS:
                        break
                    records.append(rec)
            data = capgen.pcap(records, linktype if isinstance(linktype, int) else 1)
        yield b"\xc0" + data
    for n, pdus in enumerate(_pdu_streams()):
        yield bytes([0x40 | n % 4]) + SEP.join(pdus[:12])


def write(kind: str, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    seeds = decode_seeds() if kind == "decode" else capture_seeds()
    count = 0
    for seed in seeds:
        name = hashlib.sha1(seed).hexdigest()
        target = out / name
        if not target.exists():
            target.write_bytes(seed)
            count += 1
    return count


if __name__ == "__main__":
    print(write(sys.argv[1], Path(sys.argv[2])), "seeds written")
