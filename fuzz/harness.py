"""What the fuzz targets and the robustness tests run: the `decode` and `read` paths of the command
line, from bytes to every output format, with and without keys.

An exception escaping `run_decode` or `run_capture` is a bug (the dissector's promise is that no
input stops it); so is a run slower than `TIME_LIMIT`. The only exception allowed is
`CaptureError` when the bytes are not a capture file at all, which the CLI reports in one line.

Keys are loaded at run time from `pcaps/seed-case.keys.toml` and the shared corpus (never copied
into the repository), so ciphered inputs really decipher and the plaintext is dissected too.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("DLMS_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capgen  # noqa: E402

MODES = ("summary", "tree", "json")
#: A display filter that walks the JSON of every record (`-Y`).
FILTER = 'security.key_kind == "dedicated" or apdu contains "get" or expert contains "error"'
TIME_LIMIT = 10.0  # seconds; the fuzzers report slower inputs as timeouts


def _keystore_entries() -> list[dict[str, str]]:
    """Keys published with the captures of pcaps/ and the shared corpus."""
    out: list[dict[str, str]] = []
    seed = ROOT / "pcaps" / "seed-case.keys.toml"
    if seed.is_file():
        import tomllib

        for meter in tomllib.loads(seed.read_text()).get("meter", []):
            out.append({k: v for k, v in meter.items() if k in ("ek", "ak", "hls_secret")})
    for keys_file in sorted(CORPUS.glob("interop/*/keys.json")):
        keys = json.loads(keys_file.read_text())
        entry = {k: keys[k] for k in ("ek", "ak") if keys.get(k)}
        if keys.get("hls_secret"):
            entry["hls_secret"] = "text:" + keys["hls_secret"]
        if entry:
            out.append(entry)
    manifest = CORPUS / "manifest.json"
    if manifest.is_file():
        for item in json.loads(manifest.read_text())["items"]:
            keys = item.get("keys") or {}
            ek = (keys.get("EK") or keys.get("GUEK") or "").split(" ")[0]
            ak = (keys.get("AK") or keys.get("GAK") or "").split(" ")[0]
            entry = {}
            for name, value in (("ek", ek), ("ak", ak)):
                if len(value) == 32 and all(c in "0123456789abcdefABCDEF" for c in value):
                    entry[name] = value
            if entry and entry not in out:
                out.append(entry)
    return out


_STORE = None


def keystore():
    """Every published key of the corpus, as one keystore (built once)."""
    global _STORE
    if _STORE is None:
        from keys.keystore import Keystore, keystore_from_flags

        store = Keystore([])
        for i, entry in enumerate(_keystore_entries()):
            store = store.merged(keystore_from_flags(name=f"corpus-{i}", **entry))
        _STORE = store
    return _STORE


def key_secrets() -> list[bytes]:
    """The key bytes of `keystore()` (what must never be printed)."""
    out = []
    for entry in _keystore_entries():
        for name in ("ek", "ak"):
            if name in entry:
                out.append(bytes.fromhex(entry[name]))
    return out


def _render_all(records: Iterable, modes: Sequence[str]) -> list[str]:
    from dissector.output.filter import compile_filter
    from dissector.output.jsonout import record_json
    from dissector.output.render import Renderer

    keep = compile_filter(FILTER)
    renderers = [Renderer(mode, export=True) for mode in modes]
    texts = []
    for rec in records:
        keep(record_json(rec))
        for render in renderers:
            shown = render(rec)
            if shown is not None:
                texts.append(shown.text(rec.number))
    return texts


def run_decode(lines: Sequence[bytes], keyed: bool = True, modes: Sequence[str] = MODES
               ) -> list[str]:
    """`dlms-dissect decode`: each element is one pasted line (as bytes, after hex parsing)."""
    from dissector.analysis.capture import stats_text
    from dissector.analysis.pipeline import Dissector
    from dissector.framing.lines import hex_units

    dis = Dissector(keystore() if keyed else None)

    def records():
        for item in hex_units(line for line in lines if line):
            yield from dis.process(item)

    texts = _render_all(records(), modes)
    texts.append(repr(dis.finish()))
    texts.append(stats_text(dis.tracker.summaries()))
    return texts


def run_capture(data: bytes | str | os.PathLike, keyed: bool = True,
                modes: Sequence[str] = MODES, ports: dict[int, str] | None = None
                ) -> list[str] | None:
    """`dlms-dissect read`: a capture file's bytes (or path). None when the bytes are not a
    capture (the CLI's one-line error)."""
    from dissector.analysis.capture import dissect_capture, stats_text
    from dissector.analysis.pipeline import Dissector
    from dissector.sources.capture import CaptureError

    dis = Dissector(keystore() if keyed else None)
    tmp = None
    if isinstance(data, bytes):
        tmp = tempfile.NamedTemporaryFile(suffix=".pcap", delete=False,
                                          dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        tmp.write(data)
        tmp.close()
        path = tmp.name
    else:
        path = os.fspath(data)
    try:
        try:
            records = dissect_capture(path, dis, ports)
            texts = _render_all(records, modes)
        except CaptureError:
            return None
        texts.append(repr(dis.finish()))
        texts.append(stats_text(dis.tracker.summaries()))
        return texts
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def synth_capture(kind: int, chunks: Sequence[bytes]) -> bytes:
    """A capture whose stream bytes are `chunks`: 0 = HDLC on a serial line (link type 147),
    1 = TCP to port 4059 (chunks alternate direction), 2 = UDP to port 4059, 3 = TCP with
    holes and retransmissions chosen by the chunks' first byte."""
    kind %= 4
    if kind == 0:
        return capgen.pcap([c for c in chunks if c], capgen.LINKTYPE_USER0)
    if kind == 2:
        frames = [capgen.udp_frame("10.0.0.1" if i % 2 == 0 else "10.0.0.2",
                                   40000 if i % 2 == 0 else 4059,
                                   "10.0.0.2" if i % 2 == 0 else "10.0.0.1",
                                   4059 if i % 2 == 0 else 40000, c)
                  for i, c in enumerate(chunks)]
        return capgen.pcap(frames)
    conv = capgen.TcpConversation(handshake=kind == 1)
    for i, c in enumerate(chunks):
        offset = 0
        if kind == 3 and c:
            offset = (c[0] % 7 - 3) * 16  # holes ahead, overlaps behind
        conv.send(i % 2 == 0, c, seq_offset=offset)
    if kind == 1:
        conv.close()
    return capgen.pcap(conv.frames)


def split_chunks(data: bytes, sep: bytes = b"\xa5\x5a") -> list[bytes]:
    """Fuzz bytes cut into chunks at a two-byte separator (rare in real traffic)."""
    return data.split(sep)


def decode_input(data: bytes) -> None:
    """The `decode` fuzz target: bit 0 of the first byte says keyed, the rest are the lines."""
    if data:
        run_decode(split_chunks(data[1:]), keyed=bool(data[0] & 1))


def capture_input(data: bytes) -> None:
    """The `read` fuzz target: first byte bit 7 set: the rest is a capture file; else the rest
    is stream chunks put in a capture of kind bits 0-1 (`synth_capture`). Bit 6: keyed."""
    if not data:
        return
    selector, body = data[0], data[1:]
    keyed = bool(selector & 0x40)
    if selector & 0x80:
        run_capture(body, keyed)
    else:
        run_capture(synth_capture(selector & 3, split_chunks(body)), keyed)


def output_text(texts: Iterable[str] | None) -> str:
    buf = io.StringIO()
    for t in texts or ():
        buf.write(t)
    return buf.getvalue()
