"""Instructions per APDU of our `read`, counted by valgrind's callgrind (not wall time).

For each capture kind (`headend`: ciphered, `plain`: `generate.py --plain`) it generates the
captures of two sizes (default 1,000 and 3,000 APDUs; any two of `--sizes`), runs

    python -m dissector read CAP [--keys K] --port 4061:hdlc --json [--ours-args] > /dev/null

under `valgrind --tool=callgrind` on each and reads the instructions executed (`Ir`, every
process of the run: with `--jobs N` the forked workers write a file each, counted from the
fork on, and the parent's share is shown apart). Instructions per APDU: the difference between
the two runs over the difference in APDUs; start-up: what is left at zero APDUs (the larger
run minus its APDUs times the per-APDU figure). The two captures have the same mix (same seed
and generator), not the same APDUs, so small sizes give noisier figures. Instruction counts do
not drift with the load of a shared machine as wall time does, so runs of different code
compare; a run is ~30-50 times slower than without valgrind.

    python3 bench/callgrind.py --sizes 1k,3k [--captures headend,plain] [--ours-args "--jobs 2"]

Prints a markdown table and writes `callgrind-DATE.json` to the captures folder (or
`--result`). The project is byte-compiled first, as `run.py` does (a module compiled during a
run costs millions of instructions); PYTHONHASHSEED is fixed, and two runs of the same code on
the same capture then count the same to within a few hundred instructions.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402
import run  # noqa: E402


def callgrind_total(path: Path) -> int:
    """The instructions (`Ir`) a callgrind output file counts: its `summary:` (or `totals:`)."""
    total = None
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    if total is None:
        raise ValueError(f"{path}: no summary line")
    return total


def count(man: dict[str, Any], extra: list[str], valgrind: str) -> dict[str, Any]:
    """One run of our `read --json` on a capture under callgrind: instructions of the whole
    process tree and of the parent alone, seconds, exit status."""
    files = man["files"]
    keys = [] if man.get("plain") else ["--keys", files[".keys.toml"]]
    cmd = [sys.executable, "-m", "dissector", "read", files[".pcap"], *keys, *man["ours_args"],
           "--json", *extra]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONHASHSEED"] = "0"
    with tempfile.TemporaryDirectory(prefix="dlms-callgrind-") as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        # valgrind runs the program in its own process (the pid of the parent's file); the
        # cwd puts this checkout first on `python -m`'s path, whatever is installed. A forked
        # child starts with its parent's counts: they are zeroed where Python's fork hands
        # over to the child (PyOS_AfterFork_Child, which only a child runs)
        proc = subprocess.Popen(
            [valgrind, "--tool=callgrind", "--trace-children=yes",
             "--zero-before=PyOS_AfterFork_Child",
             f"--callgrind-out-file={out}/callgrind.out.%p", f"--log-file={out}/log.%p", *cmd],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=str(HERE.parent))
        _, err = proc.communicate()
        seconds = time.perf_counter() - t0
        counts = {int(p.name.rsplit(".", 1)[1]): callgrind_total(p)
                  for p in out.glob("callgrind.out.*")}
    stderr = err.decode(errors="replace")[-500:]
    if proc.pid not in counts:
        raise RuntimeError(f"callgrind wrote nothing (exit {proc.returncode}): {stderr}")
    return {"apdus": int(man["apdus"]), "instructions": sum(counts.values()),
            "parent_instructions": counts[proc.pid], "processes": len(counts),
            "seconds": seconds, "status": proc.returncode, "command": shlex.join(cmd),
            "stderr": stderr if proc.returncode else ""}


def fit(small: dict[str, Any], large: dict[str, Any]) -> dict[str, float]:
    """Instructions per APDU (the difference over the APDU difference) and start-up (the
    rest at zero APDUs), for the whole tree and the parent."""
    apdus = large["apdus"] - small["apdus"]
    per = (large["instructions"] - small["instructions"]) / apdus
    parent = (large["parent_instructions"] - small["parent_instructions"]) / apdus
    return {"per_apdu": per, "startup": large["instructions"] - per * large["apdus"],
            "parent_per_apdu": parent,
            "parent_startup": large["parent_instructions"] - parent * large["apdus"]}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| capture | ours args | APDUs | instructions (M) | processes | start-up (M) "
             "| instructions/APDU | parent's/APDU |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        small, large, f = r["runs"][0], r["runs"][1], r["fit"]
        lines.append(f"| {r['capture']} | {r['ours_args'] or '-'} | "
                     f"{small['apdus']:,} / {large['apdus']:,} | "
                     f"{small['instructions'] / 1e6:,.0f} / {large['instructions'] / 1e6:,.0f} | "
                     f"{large['processes']} | {f['startup'] / 1e6:,.0f} | "
                     f"{f['per_apdu']:,.0f} | {f['parent_per_apdu']:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1k,3k",
                   help="two sizes in APDUs, comma-separated (counts or 1k, 10k...)")
    p.add_argument("--captures", default="headend,plain", type=run.captures_arg,
                   help="comma list of capture kinds: headend (ciphered), plain (default: "
                        "both)")
    p.add_argument("--ours-args", action="append", default=None, metavar="ARGS",
                   help='extra arguments for our read, e.g. "--jobs 2"; repeat to count several '
                        "variants")
    p.add_argument("--out", default=str(generate.DEFAULT_OUT),
                   help="captures folder (default $DLMS_BENCH_OUT or /tmp/dlms-bench)")
    p.add_argument("--result", metavar="FILE.json",
                   help="where the figures go (default OUT/callgrind-DATE.json)")
    p.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    p.add_argument("--meters", type=int, default=256)
    args = p.parse_args(argv)
    sizes = sorted(generate.parse_size(s) for s in args.sizes.split(",") if s.strip())
    if len(sizes) != 2 or sizes[0] == sizes[1]:
        p.error("--sizes: give two different sizes, e.g. 1k,3k")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        p.error("valgrind is missing (apt-get install -y valgrind)")
    out = Path(args.out)
    variants = args.ours_args or [""]
    info = run.machine()
    run.compile_project()
    print(f"# machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; code at "
          f"{info['commit']}", flush=True)
    results = []
    for kind in args.captures:
        plain, label = run.CAPTURES[kind]
        mans = [generate.generate(n, out, args.seed, args.meters, plain=plain) for n in sizes]
        for variant in variants:
            runs = []
            for man in mans:
                res = count(man, shlex.split(variant), valgrind)
                print(f"# {man['name']} {variant}: {res['instructions']:,} instructions in "
                      f"{res['processes']} process(es), {res['seconds']:.0f} s under callgrind"
                      + (f", exit {res['status']}: {res['stderr']}" if res["status"] else ""),
                      flush=True)
                runs.append(res)
            results.append({"capture": label, "ours_args": variant, "runs": runs,
                            "fit": fit(runs[0], runs[1])})
    print()
    print(table(results))
    path = Path(args.result) if args.result else \
        out / f"callgrind-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": info, "sizes": sizes, "results": results},
                               indent=1) + "\n")
    print(f"\nresults: {path}")
    return 0 if all(r["status"] == 0 for x in results for r in x["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
