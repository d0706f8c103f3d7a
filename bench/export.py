"""Benchmark: what `read -w OUT.pcapng` (the export) adds to a `read`, same capture, same run.

For each size and output mode it runs `read CAP` and `read CAP -w OUT` in turns, `--rounds`
times each (alternating, so the machine's drift falls on both alike), and reports the CPU time
(user + system, of the process and its children) and the wall time of each: the minimum and the
median, and the export's cost as the ratio of the medians and of the minimums.

    python3 bench/export.py --sizes 10k,100k [--modes summary,json] [--rounds 5]
        [--pairs 10] [--block 200] [--captures headend,plain] [--ours-args ARGS]

On a shared machine the CPU time of a run drifts by tens of per cent from run to run, more
than the export costs. Steadier figures: the instruction counts (`bench/callgrind.py
--ours-args "" --ours-args "-w /tmp/export.pcapng"`), and the last columns here, from
`--pairs` pairs of `read` and `read -w` run in turns in one more process, which has loaded
the modules once (so start-up is left out, as in a large capture): the median over the pairs
of what `-w` adds; of the export's own code (making the packets and writing them, timed
where they run) over the rest of its run; and of how
much slower that rest is than the `read` it is paired with (one process only: with `--jobs`
the workers make the packets). Steadiest of all, the "in blocks" columns: one `read -w` in one
more process with the export on and off in turns every `--block` records (200 by default), so
that the machine's drift falls on both within milliseconds: the export's code over the rest of
the blocks where it is on, how much slower that rest is than in the blocks beside them where
it is off, and what the export adds per APDU in all (the medians over the blocks).
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


def in_process(read_args: list[str], export: str, pairs: int) -> dict[str, list[float]]:
    """`pairs` pairs of `read ARGS` and `read ARGS -w EXPORT` in this process, in turns (which
    goes first alternates): each run's CPU seconds, and in each `-w` run the share of its time
    the export's code took (`Renderer.export_item`, and `PcapOut.write_item`, which makes the
    packets of a serial run in batches and writes them, timed where they run). The modules
    are loaded once, so start-up is left out: what a large capture sees per APDU."""
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

    # a serial run's packets are made by the writer in batches, as it writes them (`Later`)
    render.Renderer.export_item = timed_call(render.Renderer.export_item)  # type: ignore
    pcap.PcapOut.write_item = timed_call(pcap.PcapOut.write_item)  # type: ignore[method-assign]

    def one(args: list[str]) -> tuple[float, float]:
        spent[0] = 0.0
        cpu, start = time.process_time(), clock()
        with open(os.devnull, "w") as out:
            cli_main(args, out=out)
        return time.process_time() - cpu, spent[0] / (clock() - start)

    got: dict[str, list[float]] = {"read": [], "read_w": [], "share": []}
    with_export = [*read_args, "-w", export]
    one(read_args)  # the first run of each warms what is loaded and kept
    one(with_export)
    for i in range(pairs):
        for args in (read_args, with_export) if i % 2 == 0 else (with_export, read_args):
            cpu, share = one(args)
            got["read" if args is read_args else "read_w"].append(cpu)
            if args is with_export:
                got["share"].append(share)
    return got


def in_blocks(read_args: list[str], export: str, block: int) -> dict[str, list[float]]:
    """One `read ARGS -w EXPORT` in this process with the export on and off in turns every
    `block` records (off: no packet made or written): for each block, the time of the rest of
    the run (the block's time but the export's code) and the export's code (making the
    packets, which a serial run does in batches as it writes, and writing them)."""
    from dissector.cli.main import main as cli_main
    from dissector.output import pcap, render

    clock = time.perf_counter
    make, write = render.Renderer.export_item, pcap.PcapOut.write_item
    got: dict[str, list[float]] = {"on": [], "off": [], "code": []}
    state: dict[str, Any] = {"count": 0, "on": False, "start": 0.0, "code": 0.0, "out": None}

    def item(self: Any, *args: Any) -> Any:
        if state["count"] % block == 0:  # a block ends: its rest, and the export turns
            now = clock()
            if state["on"] and state["out"] is not None:  # the block's last packets
                state["out"].write_later()
                state["code"] += clock() - now
            now = clock()
            if state["count"]:
                rest = now - state["start"] - state["code"]
                got["on" if state["on"] else "off"].append(rest)
                if state["on"]:
                    got["code"].append(state["code"])
            state.update(start=now, code=0.0, on=not state["on"])
        state["count"] += 1
        if not state["on"]:
            return None
        start = clock()
        made = make(self, *args)
        state["code"] += clock() - start
        return made

    def written(self: Any, made: Any) -> None:
        if made is not None:
            state["out"] = self
            start = clock()
            write(self, made)
            state["code"] += clock() - start

    render.Renderer.export_item = item  # type: ignore[method-assign]
    pcap.PcapOut.write_item = written  # type: ignore[method-assign]
    with open(os.devnull, "w") as out:
        cli_main([*read_args, "-w", export], out=out)
    return got


def blocks(base: list[str], out: Path, block: int) -> dict[str, float]:
    """`in_blocks` in a process of its own: the medians, over the blocks with the export on,
    of its code over the rest, of how much slower that rest is than the mean of the blocks
    beside it, and of what the export adds in all."""
    args = base[base.index("read"):]
    done = subprocess.run([sys.executable, __file__, "--in-blocks", str(block), str(out),
                           *args], capture_output=True, text=True, check=True)
    got = json.loads(done.stdout.splitlines()[-1])
    on, off, code = got["on"], got["off"], got["code"]
    # the first block has the export on; off[i] and off[i + 1] are beside on[i + 1]
    beside = [(on[i + 1], code[i + 1], (off[i] + off[i + 1]) / 2)
              for i in range(min(len(on) - 1, len(off) - 1))]
    return {
        "block": block,
        "blocks_code": statistics.median(c / r for r, c, _ in beside),
        "blocks_rest": statistics.median(r / o - 1 for r, _, o in beside),
        "blocks_added": statistics.median((r + c) / o - 1 for r, c, o in beside),
    }


def paired(base: list[str], out: Path, pairs: int) -> dict[str, float]:
    """`in_process` in a process of its own: the medians, over the pairs, of what `-w` adds
    to the run, of the export's code over the rest of the run, and of how much slower the
    rest of a `-w` run is than the `read` it is paired with."""
    args = base[base.index("read"):]
    done = subprocess.run([sys.executable, __file__, "--in-process", str(pairs), str(out),
                           *args], capture_output=True, text=True, check=True)
    got = json.loads(done.stdout.splitlines()[-1])
    pairs_of = list(zip(got["read"], got["read_w"], got["share"], strict=True))
    return {
        "pairs": pairs,
        "pair_added": statistics.median(w / r - 1 for r, w, _ in pairs_of),
        "in_run": statistics.median(s / (1 - s) for _, _, s in pairs_of),
        "rest_slower": statistics.median(w * (1 - s) / r - 1 for r, w, s in pairs_of),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| capture | size | mode | read CPU s (min / median) | read -w CPU s (min / median) "
             "| -w adds (min / median) | in one process: -w adds | its export's code | "
             "its rest slower | in blocks: -w adds | its code | its rest slower | export MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["read"], r["read_w"]
        lines.append(f"| {r['capture']} | {r['size']} | {r['mode']} | {a['cpu_min']:.2f} / "
                     f"{a['cpu_median']:.2f} | {b['cpu_min']:.2f} / {b['cpu_median']:.2f} | "
                     f"{r['added_min']:+.0%} / {r['added_median']:+.0%} | "
                     f"{r['pair_added']:+.0%} | {r['in_run']:+.0%} | {r['rest_slower']:+.0%} | "
                     f"{_share(r, 'blocks_added')} | {_share(r, 'blocks_code')} | "
                     f"{_share(r, 'blocks_rest')} | {r['export_bytes'] / 1e6:.1f} |")
    return "\n".join(lines)


def _share(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:+.1%}" if key in row else "-"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--in-process"]:  # the child of `paired`
        print(json.dumps(in_process(argv[3:], argv[2], int(argv[1]))))
        return 0
    if argv[:1] == ["--in-blocks"]:  # the child of `blocks`
        print(json.dumps(in_blocks(argv[3:], argv[2], int(argv[1]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10k", help="capture sizes (default: 10k)")
    p.add_argument("--modes", default="summary,json",
                   help=f"output modes, of {', '.join(MODES)} (default: both)")
    p.add_argument("--captures", default="headend", type=run.captures_arg,
                   help="headend (ciphered, the default), plain, or both")
    p.add_argument("--rounds", type=int, default=5, help="runs of each (default: 5)")
    p.add_argument("--pairs", type=int, default=10,
                   help="pairs of runs in one process (default: 10)")
    p.add_argument("--block", type=int, default=200,
                   help="records per block of the in-blocks run (default: 200; 0: none)")
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
                           **paired(base, out, args.pairs)}
                    if args.block and "--jobs" not in args.ours_args:
                        row.update(blocks(base, out, args.block))
                    rows.append(row)
                    print(table([row]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    print(f"\n{os.cpu_count()} CPUs; {args.rounds} rounds each, read and read -w alternating; "
          f"{args.pairs} pairs in one process")
    if args.result:
        Path(args.result).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
