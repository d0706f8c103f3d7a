"""`dlms-dissect` (and `python -m dissector`): the command in a process of its own.

Two settings that suit a process which only dissects, made before anything is imported:
Scapy's routing tables are not read from the kernel (`scapy.route` would read them when first
imported, a tenth of a second; nothing here routes a packet, and `conf.route.resync()` reads
them on demand), and what the imports built is frozen out of the garbage collector's way
(`gc.freeze`), so the collector walks only the packets of the APDUs in flight.
"""

from __future__ import annotations

import sys


def run() -> int:
    import gc

    from scapy.config import conf

    conf.route_autoload = conf.route6_autoload = False
    from dissector.cli.main import commands, main

    commands()  # every command's modules imported, then frozen
    gc.collect()
    gc.freeze()
    return main()


if __name__ == "__main__":
    sys.exit(run())
