"""The Python API, for notebooks and scripts: a capture's records as objects, the way
`pyshark.FileCapture` gives packets.

    from dissector.api import FileCapture
    for rec in FileCapture("pcaps/seed-case.pcap", keys="pcaps/seed-case.keys.toml",
                           display_filter='security.key_kind == "dedicated"'):
        print(rec.number, rec.apdu, rec.security["key_name"])
        rec.packet.show()          # the Scapy packet (deciphered plaintext: rec.inner_packet)

Each record is the JSON contract (`rec.json`, and its keys as attributes) with its Scapy
packets; it has been through the same redaction step as every output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from scapy.packet import Packet

from dissector.analysis.capture import units_of_capture
from dissector.analysis.pipeline import Dissector
from dissector.analysis.record import ApduRecord
from dissector.output.filter import compile_filter
from dissector.output.jsonout import record_json
from dissector.output.redact import withhold_keys
from keys.keystore import Keystore, load_keystore


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One APDU of a capture: the JSON contract's values and the dissection behind them."""

    json: dict[str, Any]
    record: ApduRecord

    def __getattr__(self, name: str) -> Any:
        try:
            return self.json[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def packet(self) -> Packet:
        """The APDU (or link message) as a Scapy packet."""
        return self.record.packet

    @property
    def inner_packet(self) -> Packet | None:
        """The deciphered APDU, when the record was ciphered and deciphered."""
        return self.record.inner()

    @property
    def frame_packets(self) -> list[Packet]:
        """The HDLC frames or wrapper header that carried the APDU."""
        return self.record.frame_packets


class FileCapture:
    """The records of a capture (or of several files read as one), lazily, in order.

    `keys`: a keystore file path, a `Keystore`, or None. `display_filter`: a `-Y` filter.
    `ports`: extra DLMS ports, `{4061: "hdlc"}`. `count`: read only the first N frames.
    """

    def __init__(self, path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 keys: str | os.PathLike[str] | Keystore | None = None,
                 display_filter: str | None = None, ports: dict[int, str] | None = None,
                 count: int | None = None) -> None:
        paths = [path] if isinstance(path, str | os.PathLike) else list(path)
        self.paths = [os.fspath(p) for p in paths]
        self.keystore = keys if isinstance(keys, Keystore) else \
            load_keystore(keys) if keys is not None else Keystore()
        self.keep = compile_filter(display_filter) if display_filter else None
        self.ports = ports
        self.count = count
        self.dissector: Dissector | None = None  # of the last iteration: tracker, summaries

    def __iter__(self) -> Iterator[CaptureRecord]:
        dis = self.dissector = Dissector(self.keystore)
        for position, item in enumerate(units_of_capture(self.paths, self.ports, self.count)):
            dis.position = position
            for rec in dis.process(item):
                withhold_keys(rec)
                data = record_json(rec)
                if self.keep is None or self.keep(data):
                    yield CaptureRecord(data, rec)

    def associations(self) -> list[dict[str, Any]]:
        """Per-association statistics (as `--stats`) of the last iteration."""
        return self.dissector.tracker.summaries() if self.dissector is not None else []
