"""`--flow OUT.html`: the association flow page, opened in headless Chromium.

Expected arrows come from outside our output: the seed case's four frames and invocation
counters from `seed-case.md`, the interop scenario's APDUs from its `apdus.tsv` (tag bytes)
and their keys and counters from Gurux's `verify.txt`; titles and mechanism from `keys.json`.
Chromium is the Debian package `chromium` (`.ci/run` installs it): missing in CI is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import re
import struct
import subprocess
import tomllib
import zlib
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path
from typing import Any

from conftest import ROOT, corpus_path, require

from dissector.cli.main import main
from dissector.output.flow import FIELDS_CHARS, TEXT_CHARS, FlowWriter
from dissector.output.flow_page import KEY_KINDS
from layers.apdu.base import TAG_NAMES

SEED_PCAP = ROOT / "pcaps" / "seed-case.pcap"
SEED_KEYS = ROOT / "pcaps" / "seed-case.keys.toml"
DED = ("interop", "c_gmac_authenc_ded")
BROWSER_TIMEOUT = 120
VERIFY = re.compile(r"^apdu (\d+) (C->S|S->C) 0x\w\w(?: \(in 0x\w\w\))? SC=\w\w IC=(\d+) "
                    r"ST=\w+ key=(\w+): tag (\w+)")
GURUX_KEYS = {"global": "global-unicast", "dedicated": "dedicated"}


# -- Chromium and the DOM -----------------------------------------------------------------------
def chromium() -> str:
    """The browser; on a user's machine without it the test skips, in CI it fails."""
    return require("chromium", "chromium")


def browse(page: Path, tmp: Path, *flags: str, fragment: str = "") -> str:
    """Run headless Chromium on the page; its standard output (the DOM for --dump-dom)."""
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp / 'chromium-profile'}", *flags, page.as_uri() + fragment]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT,
                         check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


class Dom(HTMLParser):
    """What the tests read of a dumped page: arrows (attributes, shaft colour, label, marks),
    ties, the legend's colours, the index rows, the panel text and <body>'s attributes."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.arrows: list[dict[str, Any]] = []
        self.ties: list[dict[str, str]] = []
        self.legend: dict[str, str] = {}
        self.rows: list[str] = []
        self.body: dict[str, str] = {}
        self.panel = ""
        self.tags: list[str] = []
        self._arrow: dict[str, Any] | None = None
        self._depth = 0
        self._in: str | None = None
        self._kind: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        cls = a.get("class", "").split()
        self.tags.append(tag)
        if tag == "body":
            self.body = a
        elif tag == "aside" and a.get("id") == "panel":
            self._in = "panel"
        elif tag == "tr" and "data-assoc" in a:
            self._in, self.rows = "row", [*self.rows, ""]
        elif tag == "li" and "data-key-kind" in a:
            self._kind = a["data-key-kind"]
        elif tag == "line" and self._kind is not None:
            self.legend[self._kind] = a["stroke"]
            self._kind = None
        if self._arrow is not None:
            if tag == "g":
                self._depth += 1
            if "shaft" in cls:
                self._arrow["stroke"] = a["stroke"]
            elif "mark" in cls:
                self._arrow["marks"].append((a["data-severity"], a["data-code"]))
            elif "label" in cls:
                self._in = "label"
        elif tag == "g" and "arrow" in cls:
            self._arrow, self._depth = {**a, "marks": [], "label": ""}, 0
        elif tag == "g" and "tie" in cls:
            self.ties.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self._arrow is not None:
            self._depth -= 1
            if self._depth < 0:
                self.arrows.append(self._arrow)
                self._arrow = None
        elif (tag == "text" and self._in == "label") or (tag == "tr" and self._in == "row") \
                or (tag == "aside" and self._in == "panel"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "label" and self._arrow is not None:
            self._arrow["label"] += data
        elif self._in == "row":
            self.rows[-1] += data + " "
        elif self._in == "panel":
            self.panel += data + " "


def read_flow(args: list[str], page: Path) -> str:
    out = StringIO()
    assert main(["read", *args, "--flow", str(page)], out) == 0
    return page.read_text()


def ded_keys() -> dict[str, Any]:
    return json.loads(corpus_path(*DED, "keys.json").read_text())


def check_colours(dom: Dom) -> None:
    """Each kind has one colour, the legend's; kinds have distinct colours."""
    seen: dict[str, set[str]] = {}
    for a in dom.arrows:
        seen.setdefault(a["data-key-kind"], set()).add(a["stroke"])
    assert all(len(c) == 1 for c in seen.values()), seen
    assert {k: c.pop() for k, c in seen.items()} == {k: dom.legend[k] for k in seen}
    assert len(set(dom.legend.values())) == len(dom.legend) == len(KEY_KINDS)


# -- the seed case ------------------------------------------------------------------------------
def seed_case_facts() -> list[tuple[str, str, int | None]]:
    """(direction, APDU name, IC) of seed-case.md's four frames: the tag follows the LLC
    header (E6 E6 00 / E6 E7 00); the ICs are the ones the text gives (IC 0, 0x488, 3)."""
    text = corpus_path("seed-case.md").read_text()
    frames = re.findall(r"^(C->S|S->C)\s+([0-9A-F ]+)$", text, re.M)
    ics = [int(v, 0) for v in re.findall(r"\bIC (0x[0-9A-Fa-f]+|\d+)\b", text)]
    out = []
    for n, (way, hexes) in enumerate(frames):
        data = bytes.fromhex(hexes)
        tag = data[data.index(b"\xe6", 8) + 3]
        out.append(("c2s" if way == "C->S" else "s2c", TAG_NAMES[tag],
                    ics[n] if n < len(ics) else None))
    return out


def test_seed_case_page(tmp_path: Path) -> None:
    page = tmp_path / "seed.html"
    read_flow([str(SEED_PCAP), "--keys", str(SEED_KEYS)], page)
    dom = Dom(browse(page, tmp_path, "--dump-dom"))
    facts = seed_case_facts()
    assert dom.body.get("data-ready") == "4"  # the script ran to its end
    assert [(a["data-dir"], a["data-apdu"]) for a in dom.arrows] == [f[:2] for f in facts]
    assert [a["data-ic"] for a in dom.arrows] == ["" if f[2] is None else str(f[2])
                                                  for f in facts]
    assert [a["label"] for a in dom.arrows] == [
        "aarq IC=0", "aare IC=1160 0.250 s", "ded-action-request IC=3",
        "confirmed-service-error 0.250 s"]
    # seed-case.md: AARQ and AARE under the global unicast key, pass 3 under the dedicated
    # key, the meter's error in clear
    text = corpus_path("seed-case.md").read_text()
    assert "protected with the global unicast key" in text
    assert "protected with the **dedicated key**" in text
    assert [a["data-key-kind"] for a in dom.arrows] == ["global-unicast", "global-unicast",
                                                        "dedicated", "none"]
    assert [a["data-tag"] for a in dom.arrows] == ["ok", "ok", "ok", "none"]
    check_colours(dom)
    pass3, error = dom.arrows[2], dom.arrows[3]
    assert pass3["stroke"] == KEY_KINDS["dedicated"][0]
    assert ("warning", "assoc.ded-before-auth") in pass3["marks"]
    # a peer's error answer is a warning (Wireshark's severities: error = malformed or a
    # failed check)
    assert error["data-severity"] == "warning" and error["data-answers"] == pass3["data-n"]
    assert ("warning", "assoc.error-response") in error["marks"]
    assert {"data-from": error["data-n"], "data-to": pass3["data-n"]} in \
        [{k: t[k] for k in ("data-from", "data-to")} for t in dom.ties]
    html = page.read_text()  # self-contained: nothing to fetch
    assert not re.findall(r'(?:src|href)="(?!#)', html) and "url(" not in html
    assert "@import" not in html and "@font-face" not in html
    [row] = dom.rows  # one association: titles and mechanism of seed-case.md
    assert "4142434445464748 (ABCDEFGH)" in row and "474F450000581CF1" in row
    assert "high (2)" in row and "assoc.mechanism2-ciphered" in row
    selected = Dom(browse(page, tmp_path, "--dump-dom", fragment="#n=4"))
    assert "deciphering-error" in selected.panel and "frame 3 after 0.250 s" in selected.panel


def test_seed_case_screenshot_is_not_blank(tmp_path: Path) -> None:
    page = tmp_path / "seed.html"
    read_flow([str(SEED_PCAP), "--keys", str(SEED_KEYS)], page)
    shot = tmp_path / "seed.png"
    browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1000,700")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1000, 700)
    pos, idat = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8:pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(idat)
    # a blank page is rows of one colour: after PNG filtering, a handful of byte values
    assert len(set(pixels)) > 100
    assert sum(b != 0 for b in pixels) > len(pixels) // 50


def test_no_key_bytes_in_the_page(tmp_path: Path) -> None:
    page = tmp_path / "seed.html"
    html = read_flow([str(SEED_PCAP), "--keys", str(SEED_KEYS)], page).lower()
    meter = tomllib.loads(SEED_KEYS.read_text())["meter"][0]
    secrets = [bytes.fromhex(meter["ek"]), bytes.fromhex(meter["ak"]),
               meter["hls_secret"].removeprefix("text:").encode()]
    spec = importlib.util.spec_from_file_location("make_seed_case",
                                                  ROOT / "pcaps" / "make_seed_case.py")
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    secrets.append(maker.DK)  # the dedicated key the AARQ carries (learned, not given)
    # the deciphered initiate-request is shown, its dedicated key withheld (zeroed)
    assert "output.key-withheld" in html and "0" * 32 in html
    for secret in secrets:
        assert secret.hex() not in html and secret.hex(" ") not in html
    assert "seedcase" not in html.replace("seed-case", "")


# -- an interop capture with global and dedicated traffic -----------------------------------
def interop_facts() -> list[tuple[str, str, str, str]]:
    """(direction, APDU name, key kind, IC) per APDU of apdus.tsv and verify.txt."""
    rows = [line.split("\t") for line in corpus_path(*DED, "apdus.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    verify = {int(m.group(1)): m for m in map(VERIFY.match,
                                               corpus_path(*DED, "verify.txt").read_text()
                                               .splitlines()) if m}
    out = []
    for i, row in enumerate(rows):
        m = verify.get(i)
        out.append(("c2s" if row[2] == "C->S" else "s2c", TAG_NAMES[int(row[3], 16)],
                    GURUX_KEYS[m.group(4)] if m else "none", m.group(3) if m else ""))
        assert m is None or m.group(5) == "ok"
    return out


def test_interop_global_and_dedicated(tmp_path: Path) -> None:
    keys = ded_keys()
    capture = str(corpus_path(*DED, "capture.pcap"))
    page = tmp_path / "ded.html"
    html = read_flow([capture, "--ek", keys["ek"], "--ak", keys["ak"]], page)
    dom = Dom(browse(page, tmp_path, "--dump-dom"))
    facts = interop_facts()
    assert dom.body.get("data-ready") == str(len(facts))
    assert [(a["data-dir"], a["data-apdu"], a["data-key-kind"], a["data-ic"])
            for a in dom.arrows] == facts
    assert {"global-unicast", "dedicated", "none"} <= {f[2] for f in facts}
    for a, (_, name, _, ic) in zip(dom.arrows, facts, strict=True):
        assert a["label"].startswith(f"{name} IC={ic}" if ic else name), a["label"]
        assert a["data-tag"] == ("ok" if ic else "none")
    check_colours(dom)
    # every answer is tied to the request just before it
    for prev, a in zip(dom.arrows, dom.arrows[1:], strict=False):
        if a["data-dir"] == "s2c":
            assert a["data-answers"] == prev["data-n"], a
    assert len(dom.ties) == sum(f[0] == "s2c" for f in facts)
    [row] = dom.rows
    assert keys["client_system_title"] in row and keys["server_system_title"] in row
    assert f"({keys['mechanism']})" in row
    for key in ("ek", "ak", "dedicated_key"):
        assert keys[key].lower() not in html.lower()
    # --jobs 2: the dicts travel from the workers; the page is the same
    assert read_flow([capture, "--ek", keys["ek"], "--ak", keys["ak"], "--jobs", "2"],
                     tmp_path / "ded2.html") == html


# -- hostile input, caps, push sessions (no browser needed for most) ------------------------
def item(n: int, link: str, apdu: str, **extra: Any) -> dict[str, Any]:
    base = {"number": n, "frames": [n], "nframes": 1, "time": 1.0 + n, "link": link,
            "direction": "client->server", "apdu": apdu, "inner": None, "security": None,
            "response_time": None, "request_frame": None, "findings": [], "nfindings": 0,
            "summary": apdu, "fields": "{}", "acse": None}
    return {**base, **extra}


def test_capture_text_is_escaped(tmp_path: Path) -> None:
    evil = '</script><img src=x onerror="document.title=1"><b>'
    page = tmp_path / "evil.html"
    flow = FlowWriter(str(page), evil)
    flow.add(item(1, evil, "aarq", acse={"client_title": evil, "mechanism": evil},
                  findings=[{"severity": "error", "code": evil, "message": evil}],
                  summary=evil, fields=evil, inner=evil))
    flow.close()
    html = page.read_text()
    assert "<img" not in html and "<b>" not in html
    dom = Dom(browse(page, tmp_path, "--dump-dom", fragment="#n=1"))
    assert dom.body.get("data-ready") == "1"
    assert "img" not in dom.tags and "b" not in dom.tags
    assert evil in dom.panel  # shown as text, through textContent


def test_caps_are_noted(tmp_path: Path) -> None:
    page = tmp_path / "caps.html"
    flow = FlowWriter(str(page), limits=(2, 3, 5))
    n = 0
    for link in ("a", "b", "c"):
        for apdu in ("aarq", "aare", "glo-get-request", "glo-get-response"):
            n += 1
            flow.add(item(n, link, apdu))
    flow.add(item(n + 1, "a", "hdlc-rr"))
    flow.close()
    html = page.read_text()
    assert html.count('class="arrow ') == 5  # 3 of a, then 2 of b: the page budget
    assert html.count('<tr data-assoc=') == 2
    assert "1 more association(s) with 4 APDU(s) are left out" in html
    assert "3 APDU(s) of listed associations are counted but not drawn" in html
    assert "1 HDLC link frame(s)" in html
    assert html.count(" open><summary>") == 2  # few associations: shown open


def test_many_associations_start_collapsed(tmp_path: Path) -> None:
    page = tmp_path / "many.html"
    flow = FlowWriter(str(page))
    for n in range(1, 7):
        flow.add(item(n, f"link {n}", "aarq"))
    flow.close()
    html = page.read_text()
    assert html.count('<details class="assoc"') == 6 and " open><summary>" not in html


def test_push_session_and_new_association_at_aarq(tmp_path: Path) -> None:
    page = tmp_path / "push.html"
    flow = FlowWriter(str(page))
    sec = {"key_kind": "global-broadcast", "key_name": "m/bek", "tag_verified": False,
           "control": 0x70, "invocation_counter": 9, "system_title": "4D4D4D0000BC614E",
           "envelope": "general-glo-ciphering"}
    # a meter that connects to the head-end: its notifications go "client->server" on TCP
    for n in (1, 2):
        flow.add(item(n, "p", "general-glo-ciphering", inner="data-notification",
                      security=sec))
    flow.add(item(3, "q", "aarq"))
    flow.add(item(4, "q", "aare", direction="server->client", request_frame=3,
                  response_time=0.5))
    flow.add(item(5, "q", "aarq"))
    flow.close()
    dom = Dom(page.read_text())
    html = page.read_text()
    assert html.count('<details class="assoc"') == 3
    assert 'data-kind="push"' in html and 'data-lane="head-end"' in html
    assert "4D4D4D0000BC614E (MMM...)" in html
    push, aarq, aare, again = (dom.arrows[0], *dom.arrows[2:])
    assert push["data-sender"] == "meter" and push["data-key-kind"] == "global-broadcast"
    assert push["data-tag"] == "failed" and push["label"] == "general-glo-ciphering IC=9"
    assert (aarq["data-sender"], aare["data-sender"]) == ("client", "meter")
    assert aare["data-answers"] == "3" and "data-answers" not in again


def test_flow_item_is_small_plain_data() -> None:
    """What travels from a --jobs worker: plain, picklable, bounded, redacted (the renderer
    runs the redaction step before it builds the item)."""
    from dissector.analysis.capture import dissect_capture
    from dissector.analysis.pipeline import Dissector
    from dissector.output.render import Renderer
    from keys.keystore import load_keystore

    dis = Dissector(load_keystore(str(SEED_KEYS)))
    render = Renderer(flow=True)
    items = [render(rec).flow for rec in dissect_capture(str(SEED_PCAP), dis)]
    assert [i["apdu"] for i in items] == [f[1] for f in seed_case_facts()]
    for it in items:
        assert pickle.loads(pickle.dumps(it)) == it == json.loads(json.dumps(it))
        assert len(it["fields"]) <= FIELDS_CHARS + 80 and len(it["summary"]) <= TEXT_CHARS + 80
    aarq, aare = items[0]["acse"], items[1]["acse"]
    assert aarq == {"client_title": "4142434445464748", "mechanism": "high (2)"}
    assert aare["server_title"] == "474F450000581CF1" and aare["result"] == "accepted (0)"
    assert "dedicated_key: " + "0" * 32 in items[0]["fields"]
    assert "output.key-withheld" in [f["code"] for f in items[0]["findings"]]
    assert (items[3]["request_frame"], items[3]["response_time"]) == (3, 0.25)


def test_live_dissection_follows_the_display_filter(tmp_path: Path) -> None:
    """`sniff --flow -Y F`: only the records the display filter keeps reach the page."""
    from dissector.analysis.capture import units_of_capture
    from dissector.analysis.pipeline import Dissector
    from dissector.live.dissection import LiveDissection
    from dissector.output.render import Renderer
    from keys.keystore import load_keystore

    flow = FlowWriter(str(tmp_path / "tee.html"))
    live = LiveDissection(Dissector(load_keystore(str(SEED_KEYS))), StringIO(),
                          Renderer("summary", "number == 2 || number == 4", flow=True), flow)
    for item in units_of_capture(str(SEED_PCAP)):
        live.process(item)
    live.finish()
    assert live.count == 2
    assert (tmp_path / "tee.html").read_text().count('class="arrow ') == 2


def test_sniff_writes_the_page_when_stopped(tmp_path: Path) -> None:
    from test_live_tcp import SCENARIO, run_cli_tap

    page = tmp_path / "live.html"

    def not_yet() -> None:
        assert not page.exists()  # written when the capture stops

    _, proc, _, err = run_cli_tap(["--flow", str(page)], not_yet)
    assert proc.returncode == 0, err
    tsv = [line for line in corpus_path("interop", SCENARIO, "apdus.tsv").read_text()
           .splitlines() if line and not line.startswith("#")]
    html = page.read_text()
    assert html.count('class="arrow ') == len(tsv)
    assert 'data-key-kind="global-unicast"' in html
