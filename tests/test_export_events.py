"""The `-w` export carries everything `read --json` prints: a record whose JSON passes what one
pcapng option holds (65,535 bytes) goes on in `dlmsd+:` comments instead of failing the export,
and the lines that are not records (the end-of-input findings) are packets of their own. Read
back with Scapy's pcapng reader; `tests/test_wireshark.py` reads the same in the real tshark.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

from conftest import corpus_path
from scapy.utils import RawPcapNgReader, RawPcapReader
from test_tcp import GET, Conv, wrapper

from dissector import cli

#: A get-response-normal whose data is an array of 4,000 long-unsigned 0, 1, ... 3,999: its
#: JSON record is about 400 KB.
COUNT = 4000
LONG_ARRAY = (bytes.fromhex("c401c100") + b"\x01\x82" + COUNT.to_bytes(2, "big")
              + b"".join(b"\x12" + i.to_bytes(2, "big") for i in range(COUNT)))
#: A wrapper PDU cut after 10 of its 21 bytes: the stream ends inside it.
CUT = wrapper(bytes.fromhex("c001c200080000010000ff0200"))[:10]


def capture(tmp_path: Path) -> Path:
    return (Conv().handshake().c(0, GET).s(0, wrapper(LONG_ARRAY, 1, 16)).c(len(GET), CUT)
            .write(tmp_path / "long.pcap"))


def run(*argv: str) -> str:
    out = io.StringIO()
    assert cli.main(list(argv), out=out) == 0
    return out.getvalue()


def packets(export: Path) -> list[tuple[bytes, list[str]]]:
    return [(data, [c.decode() for c in meta.comments])
            for data, meta in RawPcapNgReader(str(export))]


def comment_json(comments: list[str]) -> dict:
    """The `dlmsd:` comment and its `dlmsd+:` continuations, joined and parsed."""
    marks = [c for c in comments if c.startswith(("dlmsd:", "dlmsd+:"))]
    assert marks[0].startswith("dlmsd:")
    assert all(c.startswith("dlmsd+:") for c in marks[1:])
    return json.loads(marks[0][len("dlmsd:"):] + "".join(c[len("dlmsd+:"):]
                                                         for c in marks[1:]))


def test_a_record_longer_than_an_option_is_carried_whole(tmp_path: Path) -> None:
    cap, export = capture(tmp_path), tmp_path / "long.pcapng"
    lines = [json.loads(line) for line in run("read", str(cap), "--json").splitlines()]
    run("read", str(cap), "-w", str(export))
    got = packets(export)
    _data, comments = got[1]
    assert all(len(c.encode()) <= 0xFFFF for c in comments)
    assert sum(c.startswith("dlmsd+:") for c in comments) >= 5  # 400 KB in 65 KB comments
    rec = comment_json(comments)
    array = rec["fields"]["data"]
    assert [element["value"] for element in array["values"]] == list(range(COUNT))
    want = dict(lines[1])
    del want["number"]
    assert {k: v for k, v in rec.items() if k != "summary"} == want


def test_end_of_input_findings_are_a_packet_of_their_own(tmp_path: Path) -> None:
    cap, export = capture(tmp_path), tmp_path / "long.pcapng"
    end = json.loads(run("read", str(cap), "--json").splitlines()[-1])
    assert end["end"] is True
    assert [f["code"] for f in end["expert"]] == ["wrapper.skipped-bytes"]
    run("read", str(cap), "-w", str(export))
    got = packets(export)
    assert len(got) == 3  # request, response, the end
    data, comments = got[-1]
    assert data[12:14] == b"\x88\xb5"  # IEEE 802 local experimental, not UDP 4059
    summary = "end of input: 1 finding (wrapper.skipped-bytes)"
    assert data[14:] == summary.encode()
    assert comment_json(comments) == {"summary": summary, **end}


def test_the_info_column_is_the_summary_line_after_direction_link_and_frames(
        tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    seed, keys = root / "pcaps" / "seed-case.pcap", root / "pcaps" / "seed-case.keys.toml"
    export = tmp_path / "seed.pcapng"
    records = [json.loads(line) for line in
               run("read", str(seed), "--keys", str(keys), "--json").splitlines()]
    lines = [line for line in run("read", str(seed), "--keys", str(keys), "-w",
                                  str(export)).splitlines() if not line.startswith("       ")]
    got = [comment_json(c)["summary"] for _d, c in packets(export)]
    assert len(got) == len(records) == len(lines)
    for rec, line, info in zip(records, lines, got, strict=True):
        head = f"{rec['direction']:15s} {rec['link']}  [{','.join(map(str, rec['frames']))}]  "
        assert info.startswith(rec["apdu"] + "  ")
        assert line.endswith(" " + head + info)


def test_the_export_is_the_same_whatever_the_output_mode(tmp_path: Path) -> None:
    """`--json -w` puts the text it prints into the comment; summary and `-V` make the JSON
    for the export alone: the packets and their records are the same."""
    cap = capture(tmp_path)
    exports = {}
    for mode in ([], ["--json"], ["-V"]):
        export = tmp_path / f"export{len(exports)}.pcapng"
        run("read", str(cap), *mode, "-w", str(export))
        exports[" ".join(mode)] = [(data, comment_json(c)) for data, c in packets(export)]
    assert len(exports[""]) == 3
    assert exports["--json"] == exports[""] == exports["-V"]


def test_link_messages_are_packets_of_their_own_with_their_frames(tmp_path: Path) -> None:
    """A serial HDLC capture of the corpus: SNRM, UA, the APDUs, DISC, DM. Every record is a
    packet; an HDLC frame without an APDU carries the frame as captured, outside UDP 4059."""
    cap, export = corpus_path("Dennisonius_sample_serial.pcap"), tmp_path / "serial.pcapng"
    captured = [data for data, _meta in RawPcapReader(str(cap))]
    records = [json.loads(line) for line in run("read", str(cap), "--json").splitlines()]
    run("read", str(cap), "-w", str(export))
    got = packets(export)
    assert len(got) == len(records) == len(captured)
    names = []
    for rec, (data, comments), frame in zip(records, got, captured, strict=True):
        del rec["number"]
        body = comment_json(comments)
        assert body.pop("summary").startswith(rec["apdu"] + "  ")
        assert body == rec
        names.append(rec["apdu"])
        if rec["apdu"].startswith("hdlc-"):
            assert data[12:14] == b"\x88\xb5" and data[14:] == frame
        else:
            apdu = data[14 + 20 + 8 + 8:]  # after Ethernet, IPv4, UDP and the wrapper
            assert data[12:14] == b"\x08\x00" and apdu and frame[:-3].endswith(apdu)
    assert names[:2] == ["hdlc-snrm", "hdlc-ua"] and names[-2:] == ["hdlc-disc", "hdlc-dm"]


def test_an_envelope_with_nothing_inside_is_exported_as_captured(tmp_path: Path) -> None:
    """A glo-action-request whose SC (0x21: encrypted, suite 1) and IC leave no ciphertext:
    its plaintext is empty, and the export carries the APDU as it came (it used to drop the
    record)."""
    apdu = bytes.fromhex("cb05" "21" "00000001")
    cap = Conv().handshake().c(0, wrapper(apdu)).write(tmp_path / "empty.pcap")
    export = tmp_path / "empty.pcapng"
    keys = ["--ek", "000102030405060708090A0B0C0D0E0F", "--client-title", "4142434445464748"]
    records = [json.loads(line) for line in
               run("read", str(cap), *keys, "--json").splitlines() if '"apdu"' in line]
    assert [(r["apdu"], r["plaintext"]) for r in records] == [("glo-action-request", "")]
    run("read", str(cap), *keys, "-w", str(export))
    got = [(data, comment_json(c)) for data, c in packets(export) if data[12:14] == b"\x08\x00"]
    assert len(got) == 1
    assert got[0][0][14 + 20 + 8 + 8:] == apdu
    assert got[0][1]["apdu"] == "glo-action-request"


def test_every_line_of_read_json_is_a_packet_on_mutated_captures(tmp_path: Path) -> None:
    """Corpus captures with bytes changed at random (a fixed seed): whatever `read --json`
    prints, records and findings alike, the export has one packet for each line, with that
    line as its record."""
    from conftest import CORPUS

    sources = sorted([*CORPUS.glob("*.pcap"), *CORPUS.glob("*.pcapng")])
    rnd = random.Random(4059)
    checked = 0
    for n in range(200):
        src = rnd.choice(sources)
        data = bytearray(src.read_bytes())
        for _ in range(rnd.randint(1, 20)):
            data[rnd.randrange(24, len(data))] = rnd.randrange(256)
        cap, export = tmp_path / f"m{n}{src.suffix}", tmp_path / f"m{n}.pcapng"
        cap.write_bytes(data)
        out = io.StringIO()
        if cli.main(["read", str(cap), "--json", "-w", str(export)], out=out) != 0:
            continue  # a header no longer readable: nothing dissected, nothing exported
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        got = [comment_json(c) for _d, c in packets(export)]
        assert [{k: v for k, v in g.items() if k != "summary"} for g in got] == \
            [{k: v for k, v in line.items() if k != "number"} for line in lines], src.name
        checked += 1
    assert checked >= 100


def test_packet_blocks_of_every_padding_read_back_whole(tmp_path: Path) -> None:
    """`packet_block` pads the packet and each comment to 32 bits; with two comments (most
    packets) it lays the block out without its loop. Every padding of the packet and of both
    comments, one comment past what an option holds (cut at a character's end) and three
    comments, read back by Scapy's pcapng reader: the packet, the comments, the time."""
    from dissector.output.pcap import MAX_OPTION, PcapOut, packet_block

    head = bytes(range(14))
    cases = [(bytes(range(n)), ("é" * a + "a", "b" * b), 1_700_000_000.25 + n)
             for n in range(4) for a in range(4) for b in range(4)]
    cases += [(b"\x01", ("line", "é" * MAX_OPTION), 5.5), (b"\x02", ("x", "yy", "zzz"), 6.0)]
    export = tmp_path / "blocks.pcapng"
    out = PcapOut(str(export))
    for data, comments, time in cases:
        out.write_item((packet_block(head, data, time, comments), time))
    out.close()
    got = list(RawPcapNgReader(str(export)))
    assert len(got) == len(cases)
    for (data, comments, time), (packet, meta) in zip(cases, got, strict=True):
        assert packet == head + data
        cut = [c.encode()[:MAX_OPTION].decode(errors="ignore") for c in comments]
        assert [c.decode() for c in meta.comments] == cut
        assert (meta.tshigh << 32 | meta.tslow) == round(time * 1_000_000)


def test_packets_made_later_keep_their_place(tmp_path: Path) -> None:
    """A serial `read -w` makes its records' packets in batches (`pcap.Later`): with a finding
    on its own between two records, the end-of-input findings and the last records in a batch
    not yet full, the file is the one made record by record (as `--jobs` workers make it)."""
    from dissector.analysis.capture import Numbered, run_serial, units_of_capture
    from dissector.analysis.pipeline import Dissector
    from dissector.output.pcap import BATCH, PcapOut
    from dissector.output.render import Renderer
    from layers.expert import Finding

    capture = str(corpus_path("Circutor_dlms-analysis_dlms.pcap"))
    records = [item for item in run_serial(Dissector(), units_of_capture(capture),
                                           lambda rec: rec) if isinstance(item, Numbered)]
    assert len(records) > BATCH + 1 and (len(records) - BATCH // 2 - 1) % BATCH
    lost = Finding("warning", "tcp.gap", "bytes lost", 7, 1.5, "a link")
    end = [Finding("note", "tcp.incomplete", "a PDU never completed", 9, 2.5, "a link")]
    made = {}
    for later in (False, True):
        render = Renderer("json", export=True, later=later)
        out = PcapOut(str(tmp_path / f"later{later}.pcapng"))
        for i, item in enumerate(records):
            out.write_item(render(item.item).pcap)
            if i == BATCH // 2:
                out.finding(lost)
        # the finding wrote the records before it; the rest wait for their batch
        assert len(out.later) == ((len(records) - BATCH // 2 - 1) % BATCH if later else 0)
        out.end(end)
        out.close()
        made[later] = (tmp_path / f"later{later}.pcapng").read_bytes()
    assert made[True] == made[False]
    got = packets(tmp_path / "laterTrue.pcapng")
    assert len(got) == len(records) + 2
    assert comment_json(got[BATCH // 2 + 1][1])["expert"][0]["code"] == "tcp.gap"
    assert comment_json(got[-1][1])["end"] is True
