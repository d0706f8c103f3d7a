"""Benchmark: what `read -w OUT.pcapng` (the export) adds to a `read`, same capture, same run.

For each size and output mode it runs `read CAP` and `read CAP -w OUT` in turns, `--rounds`
times each (alternating, so the machine's drift falls on both alike), and reports the CPU time
(user + system, of the process and its children) and the wall time of each: the minimum and the
median, and the export's cost as the ratio of the medians and of the minimums.

    python3 bench/export.py --sizes 10k,100k [--modes summary,json] [--rounds 5]
        [--captures headend,plain] [--ours-args ARGS]

On a shared machine the CPU time of a run drifts by tens of per cent from run to run, more
than the export costs; two figures do not drift: the instruction counts (`bench/callgrind.py
--ours-args "" --ours-args "-w /tmp/export.pcapng"`) and the last column here, "in the run":
one more `read -w` in a process of its own that times the export's code where it runs (making
each record's packet, `pcap_item`, and writing it, `PcapOut.write_item`) against the rest of
the same run, so both parts share the machine's state of the moment (one process only: with
`--jobs` the workers make the packets).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
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

MODES = {"summary": [], "json": ["--json"]}


def timed(cmd: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one command, its output thrown away."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def measure(base: list[str], out: Path, rounds: int) -> dict[str, Any]:
    """`rounds` runs of the read and of the read with `-w`, alternating."""
    plain: list[tuple[float, float]] = []
    export: list[tuple[float, float]] = []
    for _ in range(rounds):
        plain.append(timed(base))
        export.append(timed([*base, "-w", str(out)]))
    size = out.stat().st_size

    def figures(runs: list[tuple[float, float]]) -> dict[str, float]:
        cpu, wall = [r[0] for r in runs], [r[1] for r in runs]
        return {"cpu_min": min(cpu), "cpu_median": statistics.median(cpu),
                "wall_min": min(wall), "wall_median": statistics.median(wall)}

    a, b = figures(plain), figures(export)
    return {"read": a, "read_w": b, "export_bytes": size,
            "added_median": b["cpu_median"] / a["cpu_median"] - 1,
            "added_min": b["cpu_min"] / a["cpu_min"] - 1}


def in_run(read_args: list[str]) -> dict[str, float]:
    """One `read ARGS` in this process with the export's code timed where it runs: the
    seconds spent making and writing the packets, and the seconds of the whole run."""
    from dissector.cli.main import main as cli_main
    from dissector.output import pcap, render

    spent = [0.0]
    clock = time.perf_counter

    def timed_call(func: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return func(*args, **kwargs)
            finally:
                spent[0] += clock() - start
        return call

    render.pcap_item = timed_call(render.pcap_item)  # type: ignore[assignment]
    pcap.PcapOut.write_item = timed_call(pcap.PcapOut.write_item)  # type: ignore[method-assign]
    start = clock()
    with open(os.devnull, "w") as out:
        cli_main(read_args, out=out)
    return {"export": spent[0], "run": clock() - start}


def export_share(base: list[str], out: Path) -> float:
    """The export's time over the rest of its run (`in_run`, in a process of its own)."""
    args = base[base.index("read"):]
    got = subprocess.run([sys.executable, __file__, "--in-run", *args, "-w", str(out)],
                         capture_output=True, text=True, check=True)
    times = json.loads(got.stdout.splitlines()[-1])
    return times["export"] / (times["run"] - times["export"])


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| capture | size | mode | read CPU s (min / median) | read -w CPU s (min / median) "
             "| -w adds (min / median) | in the run | export MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["read"], r["read_w"]
        lines.append(f"| {r['capture']} | {r['size']} | {r['mode']} | {a['cpu_min']:.2f} / "
                     f"{a['cpu_median']:.2f} | {b['cpu_min']:.2f} / {b['cpu_median']:.2f} | "
                     f"{r['added_min']:+.0%} / {r['added_median']:+.0%} | "
                     f"{r['in_run']:+.0%} | {r['export_bytes'] / 1e6:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--in-run"]:  # the child of `export_share`
        print(json.dumps(in_run(argv[1:])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10k", help="capture sizes (default: 10k)")
    p.add_argument("--modes", default="summary,json",
                   help=f"output modes, of {', '.join(MODES)} (default: both)")
    p.add_argument("--captures", default="headend", type=run.captures_arg,
                   help="headend (ciphered, the default), plain, or both")
    p.add_argument("--rounds", type=int, default=5, help="runs of each (default: 5)")
    p.add_argument("--ours-args", default="", metavar="ARGS",
                   help="more arguments of every read (for instance --jobs 2)")
    p.add_argument("--out", default=str(generate.DEFAULT_OUT),
                   help=f"where the captures are (default: {generate.DEFAULT_OUT})")
    p.add_argument("--result", metavar="FILE.json", help="also write the rows as JSON")
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"unknown mode(s): {', '.join(unknown)}")
    run.compile_project()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.pcapng"
        for capture in args.captures:
            for text in args.sizes.split(","):
                n = generate.parse_size(text)
                man = generate.generate(n, Path(args.out), plain=run.CAPTURES[capture][0])
                for mode in modes:
                    base = [*run.ours_base(man), *MODES[mode], *shlex.split(args.ours_args)]
                    res = measure(base, out, args.rounds)
                    row = {"capture": run.capture_kind(man), "size": generate.size_name(n),
                           "mode": mode, "rounds": args.rounds, **res,
                           "in_run": export_share(base, out)}
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    print(f"\n{os.cpu_count()} CPUs; {args.rounds} rounds each, read and read -w alternating")
    if args.result:
        Path(args.result).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
