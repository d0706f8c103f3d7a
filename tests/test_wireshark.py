"""Wireshark itself reads what dlms-dissector gives it, in two versions: Debian 12's 4.0 (the
machine's tshark, from apt) and Debian 13's 4.4 (`.ci/wireshark-current.py` installs it in
/opt/wireshark-4.4; DLMS_TSHARK_CURRENT may name another tshark). For each, the README's
section of that version: `dlms-dissect wireshark --install` (4.0: with WIRESHARK_EXTCAP_DIR;
4.4: nothing but `--tshark`, into the personal folders), the Lua plugin `dlmsd` on `read -w`
exports (its fields equal `read --json`, record for record; its expert infos are the findings),
and both extcap interfaces capturing from a pseudo-terminal pair until `-a duration`.

tshark runs as a user who is not root (a user namespace: `unshare --user`), as the README
says to: root's Wireshark 4.0 reads extcaps only from the global folder, and root's 4.4 runs
no personal Lua plugin (`test_4_4_as_root_...` shows it).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import corpus_path, require, unavailable
from scapy.utils import RawPcapNgReader, RawPcapReader

from dissector import cli

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "dissector" / "wireshark" / "dlmsd.lua"
SEED = ROOT / "pcaps" / "seed-case.pcap"
SEED_KEYS = ROOT / "pcaps" / "seed-case.keys.toml"
INTEROP = "c_gmac_authenc_ded"
TIMEOUT = 120.0
DURATION = 12  # -a duration of the live captures (tshark takes seconds to start an extcap)
FIELDS = ("dlmsd.apdu", "dlmsd.key_kind", "dlmsd.tag_verified", "dlmsd.key_name",
          "dlmsd.frames", "dlmsd.link", "dlmsd.direction", "dlmsd.ic", "dlmsd.sc",
          "dlmsd.system_title", "dlmsd.inner")
#: The tshark of Wireshark 4.4 (Debian 13), as `.ci/wireshark-current.py` installs it.
CURRENT = os.environ.get("DLMS_TSHARK_CURRENT") or "/opt/wireshark-4.4/usr/bin/tshark"
VERSIONS = ("4.0", "4.4")


@dataclass
class Wireshark:
    """One tshark with a home of its own, as a user who is not root."""

    version: str
    tshark: str
    home: Path
    env: dict[str, str]
    prefix: list[str]
    install_output: str = ""
    install_args: list[str] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.prefix, self.tshark, *args], capture_output=True,
                              text=True, env=self.env, timeout=TIMEOUT, check=False)
        if check:
            assert done.returncode == 0, done.stderr
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.prefix, self.tshark, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=self.env)

    def install(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, sys.executable, "-m", "dissector", "wireshark",
                               "--install", *self.install_args], capture_output=True,
                              text=True, env=self.env, cwd=ROOT, timeout=TIMEOUT, check=False)


def tshark_of(version: str) -> str:
    """The tshark of that Wireshark version; checked with `tshark -v`."""
    if version == "4.0":
        path = require("tshark", "tshark")
    else:
        path = require(CURRENT, "tshark", "run .ci/wireshark-current.py as root, or set "
                       "DLMS_TSHARK_CURRENT to the tshark of a Wireshark 4.4")
    first = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=TIMEOUT,
                           check=False).stdout.partition("\n")[0]
    if not first.startswith(f"TShark (Wireshark) {version}."):
        unavailable(f"{path} is {first or 'not a tshark'!r}, not Wireshark {version}")
    return path


def personal(home: Path, kind: str) -> Path:
    """Wireshark's personal folders on Linux: `plugins` (Lua), `extcap` (4.2 and later)."""
    return home / ".local" / "lib" / "wireshark" / kind


def protocol(listing: str, name: str = "dlmsd") -> list[str] | None:
    """The line of `tshark -G protocols` for `name`: full name, short name, filter name (4.4
    adds three flags after them)."""
    for line in listing.splitlines():
        columns = line.split("\t")
        if columns[2:3] == [name]:
            return columns[:3]
    return None


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "WIRESHARK_", "DLMS_"))}
    env["HOME"] = str(home)
    return env


@pytest.fixture(scope="module", params=VERSIONS, ids=[f"wireshark{v}" for v in VERSIONS])
def wireshark(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Wireshark:
    """The README's section of the version: the install as the user who runs Wireshark."""
    version: str = request.param
    tshark = tshark_of(version)
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = [require("unshare", "util-linux"), "--user"]
    home = tmp_path_factory.mktemp(f"home{version}")
    env = clean_env(home)
    ws = Wireshark(version, tshark, home, env, prefix)
    if version == "4.0":  # the variable, set where Wireshark starts; tshark from PATH
        env["WIRESHARK_EXTCAP_DIR"] = str(personal(home, "extcap"))
    else:  # no variable: the personal extcap folder; this tshark is not the one on PATH
        ws.install_args = ["--tshark", tshark]
    done = ws.install()
    assert done.returncode == 0, done.stdout + done.stderr
    ws.install_output = done.stdout
    return ws


def test_install_puts_plugin_and_launcher_where_wireshark_reads_them(
        wireshark: Wireshark) -> None:
    folders = dict(line.split(":", 1) for line in
                   wireshark.run("-G", "folders").stdout.splitlines() if ":" in line)
    folders = {label: path.strip() for label, path in folders.items()}
    lua_dir = Path(folders["Personal Lua Plugins"])
    if wireshark.version == "4.0":  # one extcap folder: the variable's
        assert "Personal Extcap path" not in folders
        extcap_dir = Path(folders["Extcap path"])
    else:  # the personal folder, besides the global one; all global ones in 4.4's own tree
        extcap_dir = Path(folders["Personal Extcap path"])
        usr = Path(wireshark.tshark).resolve().parents[1]  # DIR/usr of .ci/wireshark-current.py
        for label in ("Program", "Global configuration", "Global Plugins",
                      "Global Lua Plugins", "Global Extcap path"):
            assert Path(folders[label]).is_relative_to(usr), label
        assert (usr / "bin" / "dumpcap").is_file()  # what tshark -i runs
    assert lua_dir == personal(wireshark.home, "plugins")
    assert extcap_dir == personal(wireshark.home, "extcap")
    assert (lua_dir / "dlmsd.lua").read_bytes() == LUA.read_bytes()
    assert os.access(extcap_dir / "dlms-extcap", os.X_OK)
    out = wireshark.install_output
    assert f"Wireshark found: TShark (Wireshark) {wireshark.version}." in out
    assert f"({wireshark.tshark})" in out
    assert f"installed the Lua plugin (protocol dlmsd): {lua_dir / 'dlmsd.lua'}" in out
    assert f"{extcap_dir / 'dlms-extcap'}" in out
    assert "dlmsd listed" in out and "NOT listed" not in out
    assert protocol(wireshark.run("-G", "protocols").stdout) == [
        "DLMS/COSEM (dlms-dissector)", "DLMSD", "dlmsd"]


def test_tshark_lists_both_interfaces(wireshark: Wireshark) -> None:
    done = wireshark.run("-D")
    listed = done.stdout
    assert "invalid" not in done.stderr and "dlms" not in done.stderr  # every ARG understood
    assert re.search(r"^\d+\. dlms-serial \(DLMS serial tap\)$", listed, re.M)
    assert re.search(r"^\d+\. dlms-decipher \(DLMS deciphering tap\)$", listed, re.M)


def test_4_4_as_root_lists_the_interfaces_but_runs_no_personal_lua_plugin(
        tmp_path: Path) -> None:
    """What the README says of root and 4.4: the personal extcap folder is read, the personal
    Lua plugins (and `-X lua_script:`) are not, and the install says so."""
    if os.geteuid() != 0:
        unavailable("needs root (CI runs as root)")
    tshark = tshark_of("4.4")
    root = Wireshark("4.4", tshark, tmp_path, clean_env(tmp_path), [],
                     install_args=["--tshark", tshark])
    done = root.install()
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.access(personal(tmp_path, "extcap") / "dlms-extcap", os.X_OK)
    assert (personal(tmp_path, "plugins") / "dlmsd.lua").is_file()
    assert "tshark -D: DLMS serial tap listed" in done.stdout
    assert "tshark -D: DLMS deciphering tap listed" in done.stdout
    assert "tshark -G protocols: dlmsd NOT listed" in done.stdout
    assert "no personal Lua plugin as root" in done.stdout
    listed = root.run("-D").stdout
    assert "dlms-serial (DLMS serial tap)" in listed
    assert "dlms-decipher (DLMS deciphering tap)" in listed
    assert protocol(root.run("-G", "protocols").stdout) is None
    done = root.run("-X", f"lua_script:{LUA}", "-r", str(SEED), "-Y", "dlmsd", check=False)
    assert done.returncode != 0 and '"dlmsd" is not a valid protocol' in done.stderr


# -- the export --------------------------------------------------------------------------------
def read_with_export(capture: Path, keys: list[str], export: Path) -> list[dict]:
    """`read --json -w EXPORT`: the JSON records (APDUs and link messages such as an HDLC UA;
    not the lines of findings) of the same run."""
    out = io.StringIO()
    assert cli.main(["read", str(capture), *keys, "--json", "-w", str(export)], out=out) == 0
    objs = [json.loads(line) for line in out.getvalue().splitlines()]
    return [o for o in objs if "apdu" in o]


def expected_row(rec: dict) -> list[str]:
    sec = rec["security"] or {}
    verdict = {True: "1", False: "0", None: ""}[sec.get("tag_verified")]
    ic = sec.get("invocation_counter")
    return [rec["apdu"], sec.get("key_kind") or "", verdict, sec.get("key_name") or "",
            ",".join(map(str, rec["frames"])), rec["link"], rec["direction"],
            "" if ic is None else str(ic),
            "" if sec.get("control") is None else str(sec["control"]),
            sec.get("system_title") or "", rec["inner"] or ""]


def tshark_rows(wireshark: Wireshark, export: Path, *extra: str) -> list[list[str]]:
    args = ["-r", str(export), *extra, "-T", "fields"]
    for f in FIELDS:
        args += ["-e", f]
    rows = []
    for line in wireshark.run(*args).stdout.splitlines():
        row = line.split("\t")
        verdict = {"True": "1", "False": "0"}.get(row[2], row[2])  # newer tshark: True/False
        sc = str(int(row[8], 0)) if row[8] else ""
        rows.append([*row[:2], verdict, *row[3:8], sc, *row[9:]])
    return rows


def case(name: str) -> tuple[Path, list[str]]:
    if name == "seed":
        return SEED, ["--keys", str(SEED_KEYS)]
    if name == "hdlc":  # HDLC on a serial line: SNRM, UA, ... DISC, DM around the APDUs
        return corpus_path("Dennisonius_sample_serial.pcap"), []
    keys = json.loads(corpus_path("interop", INTEROP, "keys.json").read_text())
    return corpus_path("interop", INTEROP, "capture.pcap"), ["--ek", keys["ek"], "--ak", keys["ak"]]


def without_plugin(wireshark: Wireshark, home: Path) -> Wireshark:
    """The same tshark with a home where the plugin is not installed."""
    bare = Wireshark(wireshark.version, wireshark.tshark, home,
                     {**wireshark.env, "HOME": str(home)}, wireshark.prefix)
    assert protocol(bare.run("-G", "protocols").stdout) is None  # not installed there
    return bare


@pytest.mark.parametrize("name", ["seed", "interop", "hdlc"])
@pytest.mark.parametrize("plugin", ["installed", "lua_script"])
def test_plugin_fields_equal_read_json(wireshark: Wireshark, tmp_path: Path, name: str,
                                       plugin: str) -> None:
    capture, keys = case(name)
    export = tmp_path / "export.pcapng"
    records = read_with_export(capture, keys, export)
    extra = ["-X", f"lua_script:{LUA}"] if plugin == "lua_script" else []
    if plugin == "lua_script":
        rows = tshark_rows(without_plugin(wireshark, tmp_path), export, *extra)
    else:
        rows = tshark_rows(wireshark, export)
    assert rows == [expected_row(r) for r in records]
    if name == "hdlc":  # the link messages are packets too: the DM that ends the link shows
        assert {"hdlc-snrm", "hdlc-ua", "hdlc-disc", "hdlc-dm"} <= {r["apdu"] for r in records}
    else:
        assert any(r["security"] for r in records)


@pytest.mark.parametrize("name", ["seed", "interop"])
def test_filter_on_key_kind_selects_the_dedicated_key_apdus(wireshark: Wireshark,
                                                            tmp_path: Path, name: str) -> None:
    capture, keys = case(name)
    export = tmp_path / "export.pcapng"
    records = read_with_export(capture, keys, export)
    dedicated = [expected_row(r) for r in records
                 if (r["security"] or {}).get("key_kind") == "dedicated"]
    assert dedicated  # both captures have dedicated-key traffic
    assert tshark_rows(wireshark, export, "-Y", 'dlmsd.key_kind == "dedicated"') == dedicated
    # and the filter on the verdict, a boolean field
    verified = [expected_row(r) for r in records if (r["security"] or {}).get("tag_verified")]
    assert tshark_rows(wireshark, export, "-Y", "dlmsd.tag_verified") == verified
    # the AARQ's dedicated key: withheld, and the tree says so
    withheld = [expected_row(r) for r in records
                if any(e["code"] == "output.key-withheld" for e in r["expert"])]
    assert withheld and tshark_rows(wireshark, export, "-Y", "dlmsd.key_withheld") == withheld


def test_expert_infos_are_the_findings(wireshark: Wireshark, tmp_path: Path) -> None:
    export = tmp_path / "export.pcapng"
    records = read_with_export(SEED, ["--keys", str(SEED_KEYS)], export)
    want = Counter((e["severity"], f"{e['code']}: {e['message']}")
                   for r in records for e in r["expert"])
    assert ("warning", "assoc.error-response") in {(s, t.split(":")[0]) for s, t in want}
    text = wireshark.run("-r", str(export), "-q", "-z", "expert").stdout
    sections = {"Errors": "error", "Warns": "warning", "Notes": "note", "Chats": "chat"}
    got: Counter[tuple[str, str]] = Counter()
    severity = None
    for line in text.splitlines():
        head = line.split(" (")[0].strip()
        if head in sections:
            severity = sections[head]
            continue
        m = re.match(r"\s+(\d+)\s+\S+\s+DLMSD\s+(.*)$", line)
        if m and severity:
            got[(severity, m.group(2))] += int(m.group(1))
    assert got == want


def test_without_the_plugin_the_comments_say_what_read_prints(wireshark: Wireshark,
                                                              tmp_path: Path) -> None:
    """A Wireshark without the plugin shows, as packet comments, each record as `read` prints
    it (its summary line, then each finding) before the `dlmsd:` record; the seed case's
    answer (a deciphering-error to the ded-ciphered pass 3) is among the comments that
    `-z expert` lists."""
    export = tmp_path / "export.pcapng"
    out = io.StringIO()
    assert cli.main(["read", str(SEED), "--keys", str(SEED_KEYS), "-w", str(export)], out) == 0
    printed: list[list[str]] = []  # per record: the line without number and time, findings
    for line in out.getvalue().splitlines():
        if line.startswith("       "):
            printed[-1].append(line.strip())
        else:
            printed.append([line.split(None, 2)[2]])
    assert len(printed) == 4 and any("deciphering-error" in f for f in printed[3][1:])
    bare = without_plugin(wireshark, tmp_path)
    packets = json.loads(bare.run("-r", str(export), "-T", "json", "-e", "frame.comment").stdout)
    comments = [p["_source"]["layers"]["frame.comment"] for p in packets]
    assert [c[:-1] for c in comments] == printed
    assert all(c[-1].startswith("dlmsd:{") for c in comments)
    text = bare.run("-r", str(export), "-q", "-z", "expert").stdout
    assert re.search(r"^\s+1\s+Comment\s+Frame\s+warning: assoc.error-response: "
                     r"deciphering-error answers frame 3", text, re.M), text


def ber_components(apdu: bytes) -> list[bytes]:
    """The components of an ACSE APDU (short and long BER lengths)."""
    def length(b: bytes, i: int) -> tuple[int, int]:
        if b[i] < 0x80:
            return b[i], i + 1
        n = b[i] & 0x7F
        return int.from_bytes(b[i + 1:i + 1 + n], "big"), i + 1 + n

    size, i = length(apdu, 1)
    assert i + size == len(apdu)
    out = []
    while i < len(apdu):
        n, j = length(apdu, i + 1)
        out.append(apdu[i:j + n])
        i = j + n
    return out


def export_payloads(export: Path) -> list[bytes]:
    """What follows the wrapper header in each exported UDP 4059 datagram."""
    out = []
    for data, _meta in RawPcapNgReader(str(export)):
        assert data[12:14] == b"\x08\x00" and data[23] == 17  # IPv4, UDP
        udp = data[34:]
        assert 4059 in (int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big"))
        wrapper = udp[8:]
        assert wrapper[0:2] == b"\x00\x01"
        assert int.from_bytes(wrapper[6:8], "big") == len(wrapper) - 8
        out.append(wrapper[8:])
    return out


def test_export_carries_deciphered_apdus_and_whole_acse(tmp_path: Path) -> None:
    """Against the corpus: Gurux's plaintexts, the captured ACSE APDUs, its dedicated key."""
    capture, keys = case("interop")
    export = tmp_path / "export.pcapng"
    records = read_with_export(capture, keys, export)
    payloads = export_payloads(export)
    assert len(payloads) == len(records)
    rows = [line.split("\t") for line in
            corpus_path("interop", INTEROP, "apdus.tsv").read_text().splitlines()[1:]]
    assert len(rows) == len(records)  # one corpus line per APDU, in capture order
    acse = 0
    for rec, payload, row in zip(records, payloads, rows, strict=True):
        captured = bytes.fromhex(row[4])
        gurux_plain = bytes.fromhex(row[5]) if len(row) > 5 and row[5] else None
        assert int(row[3], 16) == captured[0]
        if gurux_plain:
            assert payload == gurux_plain, rec["apdu"]
        if rec["apdu"] in ("aarq", "aare", "rlrq", "rlre") and rec["plaintext"]:
            acse += 1
            want, got = ber_components(captured), ber_components(payload)
            assert payload[0] == captured[0]
            assert got[:-1] == want[:-1]  # every component but user-information as captured
            assert want[-1][0] == got[-1][0] == 0xBE
            assert got[-1].endswith(bytes.fromhex(rec["plaintext"]))  # deciphered in place
    assert acse >= 2
    secret = bytes.fromhex(json.loads(corpus_path("interop", INTEROP, "keys.json").read_text())
                           ["dedicated_key"])
    assert secret not in export.read_bytes()
    assert secret.hex() not in export.read_bytes().decode("latin-1").lower()


# -- the extcap interfaces, live -----------------------------------------------------------------
class PtyPair:
    """Two pseudo-terminals joined by socat: Wireshark's extcap opens `a`, the test writes `b`."""

    def __init__(self, folder: Path) -> None:
        require("socat", "socat")
        self.a, self.b = folder / "ttyA", folder / "ttyB"
        self.proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={self.a}",
                                      f"pty,raw,echo=0,link={self.b}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (self.a.exists() and self.b.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.a.exists() and self.b.exists()

    def opened_by_other(self) -> bool:
        """Whether a process besides socat has `a` open (the extcap has started reading)."""
        device = os.path.realpath(self.a)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            if int(pid) in (self.proc.pid, os.getpid()):
                continue
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") == device for fd in fds):
                    return True
            except OSError:
                continue
        return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[PtyPair]:
    pair = PtyPair(tmp_path)
    yield pair
    pair.close()


def seed_frames() -> list[bytes]:
    return [data for data, _meta in RawPcapReader(str(SEED))]


def live_capture(wireshark: Wireshark, pair: PtyPair, out: Path, interface: str,
                 *options: str, then: Callable[[], object] | None = None
                 ) -> tuple[subprocess.Popen[str], float, str]:
    """tshark -i INTERFACE until -a duration; the seed case's frames written once the extcap
    has the port open, then `then()`. (tshark, seconds from the port opened to tshark's end,
    stderr)."""
    pref = interface.replace("-", "_")
    args = ["-i", interface, "-o", f"extcap.{pref}.port:{pair.a}", "-a", f"duration:{DURATION}",
            "-w", str(out)]
    for opt in options:
        args += ["-o", f"extcap.{pref}.{opt}"]
    proc = wireshark.popen(*args)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not pair.opened_by_other():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the extcap never opened the port"
            time.sleep(0.1)
        opened = time.monotonic()
        with open(pair.b, "wb", buffering=0) as line:
            for frame in seed_frames():
                line.write(frame)
                time.sleep(0.1)
        if then is not None:
            then()
        _stdout, stderr = proc.communicate(timeout=DURATION + 30)  # no kill: -a duration stops
        return proc, time.monotonic() - opened, stderr
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def test_serial_tap_captures_the_line_and_stops_at_duration(
        wireshark: Wireshark, pty_pair: PtyPair, tmp_path: Path) -> None:
    out = tmp_path / "serial.pcapng"
    proc, after_open, stderr = live_capture(wireshark, pty_pair, out, "dlms-serial")
    assert proc.returncode == 0, stderr
    assert after_open < DURATION + 10  # ended by -a duration, not by the test
    packets = list(RawPcapNgReader(str(out)))
    assert [data for data, _ in packets] == seed_frames()
    assert {meta.linktype for _, meta in packets} == {147}


def test_deciphering_tap_gives_read_s_fields(wireshark: Wireshark, pty_pair: PtyPair,
                                             tmp_path: Path) -> None:
    out = tmp_path / "decipher.pcapng"
    proc, after_open, stderr = live_capture(wireshark, pty_pair, out, "dlms-decipher",
                                            f"keys:{SEED_KEYS}")
    assert proc.returncode == 0, stderr
    assert after_open < DURATION + 10  # ended by -a duration, not by the test
    records = read_with_export(SEED, ["--keys", str(SEED_KEYS)], tmp_path / "read.pcapng")
    # the same records as read: frames numbered as they arrived, the line is "serial 1"
    assert tshark_rows(wireshark, out) == [expected_row(r) for r in records]
    text = wireshark.run("-r", str(out), "-q", "-z", "expert").stdout
    assert "assoc.error-response: deciphering-error answers frame 3" in text


def test_capture_without_a_port_ends_at_once_with_the_reason(wireshark: Wireshark,
                                                             tmp_path: Path) -> None:
    started = time.monotonic()
    done = wireshark.run("-i", "dlms-serial", "-a", "duration:600", "-w",
                         str(tmp_path / "none.pcapng"), check=False)
    assert time.monotonic() - started < 60
    assert done.returncode != 0
    assert "no serial port: set --port" in done.stderr
