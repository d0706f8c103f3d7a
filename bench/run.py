"""Benchmark: this project's `read` against Gurux's translator and dlms-cosem, same APDUs.

For each size (captures made by `generate.py`, generated on first use) it runs, one after the
other and each in its own process (so wall time and peak RSS are that tool's alone):

- ours-json:    `dlms-dissect read CAP --keys K --port 4061:hdlc --json [--ours-args]` > /dev/null
- ours-summary: the same without `--json` (one summary line per APDU)
- gurux:        `gurux_dlms.GXDLMSTranslator.messageToXml` on every wrapper PDU / HDLC frame of
                the capture, with the session's keys and titles set, comments on (the translator
                only deciphers when comments are on); every ciphered APDU's XML is checked for
                the deciphered plaintext
- gurux-nokeys: the translator without keys (no deciphering), for scale
- dlms-cosem:   wrapper / HDLC frame classes and `XDlmsApduFactory` on every PDU; envelopes
                the library has classes for (AARQ/AARE/RLRQ/RLRE user-information,
                general-glo-ciphering) are deciphered with `dlms_cosem.security.decrypt` and the
                plaintext parsed; glo-/ded- service APDUs, which the factory does not know, are
                split by the harness (tag, length, SC, IC) and deciphered and parsed the same way
                (counted apart, so the table says what the library did by itself)

`--captures headend,plain` measures the ciphered head-end captures (`headend-SIZE`, the
default), the plain ones (`plain-SIZE`, `generate.py --plain`: LLS associations, nothing
ciphered) or both; every row says which (`capture`: `ciphered` / `plain`). On a plain capture
ours runs without `--keys`, `gurux` (with keys) does not run (nothing to decipher) and
`gurux-nokeys` is the translator's full XML of every plain APDU (each checked for its element),
the reference of the "vs Gurux" column there; dlms-cosem parses every PDU and deciphers nothing.

Wall time is the whole process (start-up and imports included; `startup` shows ours on a
four-frame capture). Peak RSS: the sum over the process tree sampled every 50 ms (so `--jobs N`
workers are added up; wait4()'s ru_maxrss would count the harness's own pages, which the child
holds between fork and exec). Third-party tools run on a prefix
of `--prefix` APDUs at larger sizes and their time is extrapolated (start-up + loop x N/prefix),
marked `*`.

    python3 bench/run.py --sizes 10k,100k [--captures headend,plain] [--ours-args "--jobs 2"]
        [--skip-gurux] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

DED_RESPONSES = frozenset({0xD4, 0xD5, 0xD7})
ACSE = frozenset({0x60, 0x61, 0x62, 0x63})
PAGE = os.sysconf("SC_PAGE_SIZE")

# Green Book names (lower-kebab) of the tags the generator emits, for the --check step.
NAMES = {
    0x01: "initiate-request", 0x08: "initiate-response", 0x0F: "data-notification",
    0x60: "aarq", 0x61: "aare", 0x62: "rlrq", 0x63: "rlre",
    0xC0: "get-request", 0xC1: "set-request", 0xC3: "action-request",
    0xC4: "get-response", 0xC5: "set-response", 0xC7: "action-response",
    0xC8: "glo-get-request", 0xC9: "glo-set-request", 0xCB: "glo-action-request",
    0xCC: "glo-get-response", 0xCD: "glo-set-response", 0xCF: "glo-action-response",
    0xD0: "ded-get-request", 0xD1: "ded-set-request", 0xD3: "ded-action-request",
    0xD4: "ded-get-response", 0xD5: "ded-set-response", 0xD7: "ded-action-response",
    0xDB: "general-glo-ciphering",
}
KEY_KINDS = {generate.KIND_GLOBAL: "global-unicast", generate.KIND_DEDICATED: "dedicated"}
#: The element Gurux's translator writes for each plain APDU of the captures (inside <PDU>).
GURUX_ELEMENTS = {
    0x0F: "DataNotification", 0x60: "AssociationRequest", 0x61: "AssociationResponse",
    0x62: "ReleaseRequest", 0x63: "ReleaseResponse", 0xC0: "GetRequest", 0xC1: "SetRequest",
    0xC3: "ActionRequest", 0xC4: "GetResponse", 0xC5: "SetResponse", 0xC7: "ActionResponse",
}
#: The capture kinds of --captures: (generate.py's `plain`, the label of the rows).
CAPTURES = {"headend": (False, "ciphered"), "plain": (True, "plain")}


# ---------------------------------------------------------------------------------------------
# Measuring a child process
# ---------------------------------------------------------------------------------------------


def _tree_memory(root: int) -> tuple[int, int]:
    """(resident, proportional) bytes of `root` and all its descendants. RSS counts a page
    that forked processes share once per process; PSS splits it between them, so the sum over
    a `--jobs` process tree is the memory the tree really holds."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, pss, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        pss += _pss(pid)
        todo.extend(children.get(pid, ()))
    return total, pss


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def measure(cmd: list[str], stdout: Any = subprocess.DEVNULL, timeout: float | None = None,
            count_lines: bool = False) -> dict[str, Any]:
    """Run `cmd`; wall seconds, CPU seconds, peak RSS (MB), exit status, stderr tail.

    `timeout` kills the process group after that many seconds (`timed_out` is then set);
    `count_lines` reads its standard output through a pipe and counts the lines (`lines`)."""
    err = tempfile.TemporaryFile()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    # as from a login shell: PYTHONUNBUFFERED (set in some sandboxes) would make every record
    # written a system call of its own
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if count_lines else stdout, stderr=err,
                            start_new_session=True, env=env)
    peak = peak_pss = 0
    lines = 0
    done = threading.Event()
    timed_out = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss
        while not done.wait(0.05):
            rss, pss = _tree_memory(proc.pid)
            peak, peak_pss = max(peak, rss), max(peak_pss, pss)
            if timeout is not None and time.perf_counter() - t0 > timeout:
                timed_out.set()
                try:
                    os.killpg(proc.pid, 9)
                except OSError:
                    pass
                return

    def count() -> None:
        # records: JSON lines, or summary lines (which start with the record number; the
        # findings under them are indented further and start with a word)
        nonlocal lines
        assert proc.stdout is not None
        carry = b""
        while chunk := proc.stdout.read(1 << 20):
            parts = (carry + chunk).split(b"\n")
            carry = parts.pop()
            lines += sum(1 for p in parts if p.lstrip()[:1] in b"{0123456789" and p.strip())

    threads = [threading.Thread(target=sample, daemon=True)]
    if count_lines:
        threads.append(threading.Thread(target=count, daemon=True))
    for th in threads:
        th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    for th in threads:
        th.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    tail = err.read()[-2000:].decode(errors="replace")
    err.close()
    # ru_maxrss counts the harness's own pages the child had between fork and exec (this
    # process holds the PDU lists and the records checked): the sampled tree is the figure
    return {"seconds": wall, "rss_mb": (peak or usage.ru_maxrss * 1024) / 1e6,
            "maxrss_mb": usage.ru_maxrss / 1024, "tree_peak_mb": peak / 1e6,
            "pss_mb": peak_pss / 1e6,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "status": proc.returncode,
            "stderr": tail, "load_before": load, "timed_out": timed_out.is_set(),
            "lines": lines if count_lines else None}


def compile_project() -> None:
    """Byte-compile this project's modules, as installing the package does (pip writes the
    .pyc files; a source checkout run with PYTHONDONTWRITEBYTECODE=1 would compile every
    module at every start, 0.1 s that no installed copy pays)."""
    import compileall

    for part in ("layers", "keys", "dissector"):
        compileall.compile_dir(str(HERE.parent / part), quiet=1)


def ours_command() -> list[str]:
    """The installed command of this interpreter (not a version manager's shim in front of it,
    which costs a shell start), else the one on PATH, else the module."""
    beside = Path(sys.executable).with_name("dlms-dissect")
    exe = str(beside) if beside.is_file() else shutil.which("dlms-dissect")
    return [exe] if exe else [sys.executable, "-m", "dissector"]


# ---------------------------------------------------------------------------------------------
# Workers (run in their own process: `run.py --worker NAME ...`)
# ---------------------------------------------------------------------------------------------


def load_sessions(path: str) -> dict[int, tuple[bytes, ...]]:
    out: dict[int, tuple[bytes, ...]] = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            sid, _kind, _tr, ct, st, ek, ak, dk = line.rstrip("\n").split("\t")
            out[int(sid)] = (bytes.fromhex(ct), bytes.fromhex(st), bytes.fromhex(ek),
                             bytes.fromhex(ak), bytes.fromhex(dk) if dk != "-" else b"")
    return out


def worker_gurux(args: argparse.Namespace) -> dict[str, Any]:
    from gurux_dlms import GXDLMSTranslator
    from gurux_dlms.enums import Security, TranslatorOutputType

    sessions = load_sessions(args.sessions) if args.keys else {}
    t = GXDLMSTranslator(TranslatorOutputType.SIMPLE_XML)
    if args.keys:
        t.comments = True  # the translator deciphers only inside comments
        t.security = Security.AUTHENTICATION_ENCRYPTION
    records = list(generate.read_pdus(args.pdus, args.limit))
    stats: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    sample: dict[str, str] = {}
    current = -1
    t0 = time.perf_counter()
    for sid, _frame, _d, kind, inner, outer, data in records:
        if args.keys:
            ct, st, ek, ak, dk = sessions[sid]
            if sid != current:
                current = sid
                t.systemTitle, t.serverSystemTitle = bytearray(ct), bytearray(st)
                t.authenticationKey = bytearray(ak)
                t.dedicatedKey = bytearray(dk) if dk else None
            # the translator deciphers ded-*-responses with blockCipherKey, not dedicatedKey
            ded_rsp = outer in DED_RESPONSES and args.ded_workaround
            t.blockCipherKey = bytearray(dk if ded_rsp else ek)
        try:
            xml = t.messageToXml(bytearray(data))
        except Exception as exc:  # noqa: BLE001 - count what the tool could not decode
            stats[f"error.{type(exc).__name__}"] += 1
            continue
        stats["frames"] += 1
        if not outer:
            continue
        stats["apdus"] += 1
        element = GURUX_ELEMENTS.get(outer)
        if element is not None:  # a plain APDU: the translator's full XML of it
            stats["plain"] += 1
            if f"<{element}>" in xml and f"</{element}>" in xml:
                stats["plain.xml"] += 1
            else:
                missed[f"xml:{outer:02X}"] += 1
        if args.keys and kind:
            stats["ciphered"] += 1
            want = "Decrypted data:" if outer in ACSE else f"Decrypt data: {inner:02X}"
            if want in xml:
                stats["deciphered"] += 1
                sample.setdefault(f"{outer:02X}", xml)
            else:
                missed[f"{outer:02X}"] += 1
    loop = time.perf_counter() - t0
    return {"loop_seconds": loop, "stats": dict(stats), "missed_by_tag": dict(missed),
            "sample_tags": sorted(sample)}


def worker_cosem(args: argparse.Namespace) -> dict[str, Any]:
    from dlms_cosem import security
    from dlms_cosem.connection import XDlmsApduFactory
    from dlms_cosem.hdlc.frames import InformationFrame
    from dlms_cosem.protocol.wrappers import WrapperProtocolDataUnit

    # without keys (a plain capture) nothing is deciphered: a glo-/ded- APDU would be a failure
    sessions = load_sessions(args.sessions) if args.keys else {}
    records = list(generate.read_pdus(args.pdus, args.limit))
    stats: Counter[str] = Counter()
    fails: Counter[str] = Counter()
    factory = XDlmsApduFactory.apdu_from_bytes

    def decipher(sc: int, ic: int, payload: bytes, title: bytes, key: bytes, ak: bytes
                 ) -> bytes:
        return security.decrypt(security.SecurityControlField.from_bytes(bytes((sc,))),
                                title, ic, key, payload, ak)

    t0 = time.perf_counter()
    for sid, _frame, direction, _kind, _inner, outer, data in records:
        ct, st, ek, ak, dk = sessions.get(sid) or (b"",) * 5
        own_title = ct if direction == 0 else st
        stage = "frame"
        try:
            if data[:1] == b"\x7e":
                if not outer:
                    stats["hdlc-non-i-frames.skipped"] += 1
                    continue
                apdu = InformationFrame.from_bytes(data).information[3:]  # LLC header
            else:
                apdu = WrapperProtocolDataUnit.from_bytes(data).data
            if not outer:
                continue
            stage = "apdu"
            try:
                obj = factory(apdu)
                own = True
            except KeyError:
                if not args.keys or (outer not in generate.GLO.values()
                                     and outer not in generate.DED.values()):
                    raise
                # glo-/ded- service envelope: tag, length, SC, IC, ciphertext||tag
                n = apdu[1]
                p = 2 if n < 0x80 else 2 + (n & 0x7F)
                key = dk if outer in generate.DED.values() else ek
                plain = decipher(apdu[p], int.from_bytes(apdu[p + 1:p + 5], "big"),
                                 bytes(apdu[p + 5:]), own_title, key, ak)
                stage = "inner"
                obj = factory(plain)
                own = False
            stage = "inner"
            content = getattr(getattr(obj, "user_information", None), "content", None)
            env = content if hasattr(content, "ciphered_text") else obj
            if hasattr(env, "ciphered_text") and args.keys:
                title = getattr(env, "system_title", None) or own_title
                plain = decipher(env.security_control.to_bytes()[0], env.invocation_counter,
                                 env.ciphered_text, title, ek, ak)
                factory(plain)
            stats["parsed.library" if own else "parsed.harness-unwrapped"] += 1
        except Exception as exc:  # noqa: BLE001 - count what the tool could not parse
            key = f"{stage}:{outer:02X}:{type(exc).__name__}"
            fails[key] += 1
            stats[f"failed.{stage}"] += 1
        if outer:
            stats["apdus"] += 1
    loop = time.perf_counter() - t0
    return {"loop_seconds": loop, "stats": dict(stats), "failures": dict(fails.most_common())}


def worker_main(args: argparse.Namespace) -> int:
    result = worker_gurux(args) if args.worker == "gurux" else worker_cosem(args)
    Path(args.result).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# The check: our --json records against what the generator wrote
# ---------------------------------------------------------------------------------------------


def ours_base(man: dict[str, Any]) -> list[str]:
    """Our `read` of a capture: with its keystore, except for a plain capture."""
    files = man["files"]
    keys = [] if man.get("plain") else ["--keys", files[".keys.toml"]]
    return [*ours_command(), "read", files[".pcap"], *keys, *man["ours_args"]]


def check_ours(man: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """Every generated APDU in our --json: name, direction, and for a ciphered one the inner
    APDU, key kind and verified tag; an APDU sent in the clear has `security` null."""
    files = man["files"]
    cmd = [*ours_base(man), "--json", *extra]
    with tempfile.TemporaryFile() as out:
        res = measure(cmd, stdout=out)
        out.seek(0)
        by_frame: dict[int, list[dict[str, Any]]] = {}
        expert: Counter[str] = Counter()
        for line in out:
            rec = json.loads(line)
            for e in rec["expert"]:
                expert[f"{e['severity']}:{e['code']}"] += 1
            slim = {k: rec[k] for k in ("apdu", "direction", "inner", "security")}
            by_frame.setdefault(max(rec["frames"]), []).append(slim)
    problems: Counter[str] = Counter()
    examples: dict[str, Any] = {}
    matched = 0
    for sid, frame, direction, kind, inner, outer, _data in generate.read_pdus(files[".pdus"]):
        if not outer:
            continue
        recs = [r for r in by_frame.get(frame, []) if r["apdu"] == NAMES.get(outer)]
        got = recs[0] if recs else None
        want_dir = "client->server" if direction == 0 else "server->client"
        issues = []
        if got is None:
            issues.append(f"missing {NAMES.get(outer)}")
        else:
            matched += 1
            sec = got["security"] or {}
            if got["direction"] != want_dir and not (outer == 0xDB and direction == 0):
                issues.append(f"direction {got['direction']}")
            if kind:
                if got["inner"] != NAMES.get(inner):
                    issues.append(f"inner {got['inner']} (want {NAMES.get(inner)})")
                if sec.get("key_kind") != KEY_KINDS[kind]:
                    issues.append(f"key_kind {sec.get('key_kind')} (want {KEY_KINDS[kind]})")
                if sec.get("tag_verified") is not True:
                    issues.append(f"tag_verified {sec.get('tag_verified')}")
            elif got["security"] is not None:
                issues.append("security not null")
        for issue in issues:
            k = f"{NAMES.get(outer)}: {issue}"
            problems[k] += 1
            examples.setdefault(k, {"session": sid, "frame": frame})
    return {"seconds": res["seconds"], "status": res["status"], "matched": matched,
            "problems": dict(problems.most_common()), "examples": examples,
            "expert": dict(expert.most_common())}


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------


def run_worker(name: str, man: dict[str, Any], limit: int | None, keys: bool = True,
               ded_workaround: bool = True) -> dict[str, Any]:
    files = man["files"]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        result_path = tmp.name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
           "--pdus", files[".pdus"], "--sessions", files[".sessions.tsv"],
           "--result", result_path]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    if not keys:
        cmd.append("--no-keys")
    if not ded_workaround:
        cmd.append("--no-ded-workaround")
    res = measure(cmd)
    try:
        res["worker"] = json.loads(Path(result_path).read_text())
    except (OSError, ValueError):
        res["worker"] = {}
    finally:
        Path(result_path).unlink(missing_ok=True)
    return res


def capture_kind(man: dict[str, Any]) -> str:
    return "plain" if man.get("plain") else "ciphered"


def row(tool: str, size: str, apdus: int, res: dict[str, Any], note: str = "",
        extrapolated: bool = False, capture: str = "ciphered") -> dict[str, Any]:
    secs = res["seconds"]
    return {"tool": tool, "size": size, "capture": capture, "apdus": apdus, "seconds": secs,
            "apdus_per_s": apdus / secs if secs else 0.0, "us_per_apdu": secs / apdus * 1e6,
            "rss_mb": res["rss_mb"], "pss_mb": res.get("pss_mb") or 0.0,
            "extrapolated": extrapolated, "note": note,
            "status": res.get("status", 0), "cpu_seconds": res.get("cpu_seconds"),
            "timed_out": res.get("timed_out", False),
            "load_before": res.get("load_before")}


def third_party(name: str, label: str, man: dict[str, Any], prefix: int, keys: bool = True,
                ded_workaround: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    n = int(man["apdus"])
    limit = prefix if n > prefix else None
    res = run_worker(name, man, limit, keys, ded_workaround)
    w = res.get("worker", {})
    done = int(w.get("stats", {}).get("apdus", 0)) or (limit or n)
    extrap = limit is not None
    if extrap and w.get("loop_seconds"):
        start = res["seconds"] - w["loop_seconds"]
        scale = (start + w["loop_seconds"] * n / done) / res["seconds"]
        res = dict(res, seconds=res["seconds"] * scale,
                   cpu_seconds=(res["cpu_seconds"] or 0.0) * scale)
    note = f"measured on the first {done} APDUs, time extrapolated" if extrap else ""
    return row(label, man["name"].split("-")[-1], n, res, note, extrap, capture_kind(man)), res


def _ours_run(label: str, cmd: list[str], size: str, n: int, timeout: float,
              capture: str = "ciphered") -> tuple[dict[str, Any], str]:
    """One run of our `read`: its row and a note (stopped early, failed)."""
    res = measure(cmd, timeout=timeout or None, count_lines=bool(timeout))
    r = row(label, size, n, res, capture=capture)
    if res["timed_out"]:
        done = int(res["lines"] or 0)
        r = row(label, size, max(done, 1), res, f"stopped after {timeout:g} s: {done:,} of "
                f"{n:,} records written (rate over those)", capture=capture)
        return r, r["note"]
    if res["status"]:
        return r, f"exit {res['status']}: {res['stderr'][-300:]}"
    return r, ""


def _third_run(name: str, label: str, man: dict[str, Any], prefix: int, keys: bool = True,
               ded_workaround: bool = True) -> tuple[dict[str, Any], str]:
    """One run of a third-party tool: its row and what it deciphered/parsed."""
    r, res = third_party(name, label, man, prefix, keys, ded_workaround)
    what = describe_gurux(res) if name == "gurux" else \
        describe_cosem(res, not keys) if label == "dlms-cosem" else ""
    return r, "; ".join(x for x in (what, r["note"]) if x)


def describe_gurux(res: dict[str, Any]) -> str:
    w = res.get("worker", {})
    s = w.get("stats", {})
    parts = []
    if s.get("ciphered"):
        parts.append(f"deciphered {s.get('deciphered', 0)}/{s['ciphered']} ciphered APDUs")
    if s.get("plain"):
        parts.append(f"full XML of {s.get('plain.xml', 0)}/{s['plain']} plain APDUs")
    text = "; ".join(parts)
    if w.get("missed_by_tag"):
        text += f"; missed by outer tag (xml: no full XML): {w['missed_by_tag']}"
    errors = {k: v for k, v in s.items() if k.startswith("error.")}
    if errors:
        text += f"; errors {errors}"
    return text


def describe_cosem(res: dict[str, Any], plain: bool = False) -> str:
    w = res.get("worker", {})
    s = w.get("stats", {})
    if plain:
        text = f"{s.get('parsed.library', 0)} APDUs parsed by the library (nothing ciphered), "
    else:
        text = (f"{s.get('parsed.library', 0)} APDUs parsed (and deciphered) by the library, "
                f"{s.get('parsed.harness-unwrapped', 0)} after the harness split the glo-/ded- "
                f"envelope, ")
    text += (f"{s.get('failed.frame', 0)} frames and "
             f"{s.get('failed.apdu', 0) + s.get('failed.inner', 0)} APDUs not parsed")
    if w.get("failures"):
        top = list(w["failures"].items())[:8]
        text += "; failures (stage:tag:error): " + ", ".join(f"{k} x{v}" for k, v in top)
    return text


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as markdown; "vs Gurux" is against `gurux` on a ciphered capture and against
    `gurux-nokeys` (nothing to decipher) on a plain one, same size."""
    reference = {"ciphered": "gurux", "plain": "gurux-nokeys"}
    gurux = {(r["size"], r.get("capture", "ciphered")): r for r in rows
             if r["tool"] == reference.get(r.get("capture", "ciphered"))}
    cosem = {(r["size"], r.get("capture", "ciphered")): r for r in rows
             if r["tool"] == "dlms-cosem"}
    head = ("| tool | size | capture | APDUs | seconds | APDUs/s | µs/APDU | peak RSS MB "
            "| peak PSS MB | vs Gurux | vs dlms-cosem | CPU s | vs Gurux (CPU) |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        key = (r["size"], r.get("capture", "ciphered"))
        g, c = gurux.get(key), cosem.get(key)
        ratio = f"{r['apdus_per_s'] / g['apdus_per_s']:.2f}x" if g else "-"
        vs_cosem = f"{r['apdus_per_s'] / c['apdus_per_s']:.2f}x" if c else "-"
        cpu = r.get("cpu_seconds") or 0.0
        cpu_ratio = f"{g['cpu_seconds'] / cpu:.2f}x" if g and cpu and g.get("cpu_seconds") \
            else "-"
        star = "*" if r["extrapolated"] else ""
        fail = " (stopped)" if r.get("timed_out") else \
            f" (exit {r['status']})" if r["status"] else ""
        lines.append(f"| {r['tool']}{fail} | {r['size']} | {key[1]} | {r['apdus']:,} | "
                     f"{r['seconds']:.1f}{star} | {r['apdus_per_s']:,.0f} | "
                     f"{r['us_per_apdu']:.0f} | {r['rss_mb']:.0f} | "
                     f"{r.get('pss_mb') or 0:.0f} | {ratio} | {vs_cosem} | "
                     f"{cpu:.1f}{star} | {cpu_ratio} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    mem = ""
    try:
        mem = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout
    except OSError:
        pass
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = ""
    try:  # read-only: which code was measured
        repo = str(HERE.parent)
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True).stdout
        if dirty.strip():
            commit += f" + {len(dirty.splitlines())} changed files"
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), "free": mem.strip(), "commit": commit}


def _runs(args: argparse.Namespace, man: dict[str, Any], variants: list[str]
          ) -> list[tuple[str, Callable[[], tuple[dict[str, Any], str]]]]:
    """The runs of one capture, in the order of a round: ours (each variant, --json then
    summary), gurux (ciphered captures only), gurux-nokeys, dlms-cosem."""
    size, n, kind = man["name"].split("-")[-1], int(man["apdus"]), capture_kind(man)
    plain = bool(man.get("plain"))
    runs: list[tuple[str, Callable[[], tuple[dict[str, Any], str]]]] = []
    if not args.skip_ours:
        for variant in variants:
            extra = shlex.split(variant)
            for mode in ("json", "summary"):
                if mode == "summary" and args.skip_summary:
                    continue
                label = f"ours-{mode}" + (f" {variant}" if extra else "")
                cmd = [*ours_base(man), *(["--json"] if mode == "json" else []), *extra]
                runs.append((label, partial(_ours_run, label, cmd, size, n, args.timeout,
                                            kind)))
    if not args.skip_gurux and not plain:
        runs.append(("gurux", partial(_third_run, "gurux", "gurux", man, args.prefix,
                                      ded_workaround=args.ded_workaround)))
    if not args.skip_gurux_nokeys:
        runs.append(("gurux-nokeys", partial(_third_run, "gurux", "gurux-nokeys", man,
                                             args.prefix, keys=False)))
    if not args.skip_cosem:
        runs.append(("dlms-cosem", partial(_third_run, "cosem", "dlms-cosem", man,
                                           args.prefix, keys=not plain)))
    return runs


def captures_arg(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in CAPTURES]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"capture kinds are {', '.join(CAPTURES)}")
    return list(dict.fromkeys(kinds))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10k,100k", help="comma list: 10k,100k,1m or counts")
    p.add_argument("--captures", default="headend", type=captures_arg,
                   help="comma list of capture kinds: headend (ciphered, the default), plain "
                        "(generate.py --plain: nothing ciphered; ours without --keys, "
                        "gurux-nokeys as the reference, no gurux row)")
    p.add_argument("--out", default=str(generate.DEFAULT_OUT),
                   help="captures and results folder (default $DLMS_BENCH_OUT or /tmp/dlms-bench)")
    p.add_argument("--ours-args", action="append", default=None, metavar="ARGS",
                   help='extra arguments for our read, e.g. "--jobs 2"; repeat to run several '
                        'variants (\'--ours-args "" --ours-args "--jobs 2"\')')
    p.add_argument("--timeout", type=float, default=0.0,
                   help="stop each of our runs after this many seconds (0: no limit); the rate "
                        "is then taken over the records written so far")
    p.add_argument("--prefix", type=int, default=100_000,
                   help="APDUs the third-party tools run on at larger sizes (extrapolated)")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of every run, interleaved; the table keeps each tool's fastest")
    p.add_argument("--skip-ours", action="store_true")
    p.add_argument("--skip-summary", action="store_true", help="skip ours-summary")
    p.add_argument("--skip-gurux", action="store_true")
    p.add_argument("--skip-gurux-nokeys", action="store_true")
    p.add_argument("--skip-cosem", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="also compare our --json records with what the generator wrote")
    p.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    p.add_argument("--meters", type=int, default=256)
    # worker mode (internal)
    p.add_argument("--worker", choices=("gurux", "cosem"), help=argparse.SUPPRESS)
    p.add_argument("--pdus", help=argparse.SUPPRESS)
    p.add_argument("--sessions", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    p.add_argument("--no-keys", dest="keys", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("--no-ded-workaround", dest="ded_workaround", action="store_false",
                   help="give Gurux's translator the global key for ded-*-responses too (as a "
                        "user setting blockCipherKey once would): it then leaves them ciphered")
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)

    out = Path(args.out)
    variants = args.ours_args or [""]
    info = machine()
    print(f"# machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
          f"{info['platform']}; code at {info['commit']}", flush=True)
    ours = ours_command()
    compile_project()
    start = measure([*ours, "read", str(HERE.parent / "pcaps" / "seed-case.pcap")])
    print(f"# startup: ours reading a 4-frame capture takes {start['seconds']:.2f} s, "
          f"{start['rss_mb']:.0f} MB", flush=True)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    checks: dict[str, Any] = {}
    for text in args.sizes.split(","):
        n = generate.parse_size(text)
        for kind in args.captures:
            plain, label_kind = CAPTURES[kind]
            t0 = time.perf_counter()
            man = generate.generate(n, out, args.seed, args.meters, plain=plain)
            size = man["name"].split("-")[-1]
            print(f"# {man['name']}: {man['apdus']:,} APDUs in {man['frames']:,} frames, "
                  f"{int(man['pcap_bytes']) / 1e6:.0f} MB pcap (ready in "
                  f"{time.perf_counter() - t0:.1f} s; generated in {man['seconds']} s)",
                  flush=True)
            runs = _runs(args, man, variants)
            best: dict[str, tuple[dict[str, Any], str]] = {}
            for rnd in range(args.repeat):
                for label, run in runs:  # rounds interleave the tools: a slow spell hits all
                    r, note = run()
                    r["round"] = rnd + 1
                    print(table([r]).splitlines()[-1] + (f"  # round {rnd + 1}"
                                                          if args.repeat > 1 else "")
                          + (f"  # {note}" if note else ""), flush=True)
                    if label not in best or (r["seconds"] < best[label][0]["seconds"]
                                             and not r["status"]):
                        best[label] = (r, note)
            for label, _ in runs:
                r, note = best[label]
                rows.append(r)
                if note:
                    notes.append(f"{label} {size} {label_kind}: {note}")
            if plain and not args.skip_gurux:
                notes.append(f"gurux {size} plain: not run (nothing to decipher); the "
                             f"reference is gurux-nokeys")
            if args.check:
                key = f"{size} {label_kind}"
                checks[key] = c = check_ours(man, shlex.split(variants[0]))
                print(f"# check {key}: {c['matched']:,}/{n:,} APDUs found in our --json; "
                      f"problems: {c['problems'] or 'none'}; expert findings: {c['expert']}",
                      flush=True)
    print()
    print(table(rows))
    if any(r["extrapolated"] for r in rows):
        print(f"\n`*` extrapolated from the first {args.prefix:,} APDUs.")
    for note in notes:
        print(f"- {note}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{stamp}.json").write_text(json.dumps(
        {"machine": info, "startup": start, "ours_args": variants, "captures": args.captures,
         "rows": rows,
         "notes": notes, "checks": checks}, indent=1, default=str) + "\n")
    print(f"\nresults: {out / f'results-{stamp}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
