"""Reassembly of APDUs split across HDLC frames (segmentation bit) and general-block-transfer."""

from __future__ import annotations

from dataclasses import dataclass, field

from layers.expert import Finding
from layers.hdlc import LLC_REQUEST, LLC_RESPONSE

MAX_APDU = 1 << 20  # an APDU larger than this is a flood, not a meter
MAX_PENDING_LINKS = 8  # address pairs with a segmented APDU in flight at once


@dataclass
class Pending:
    """Bytes gathered so far for one APDU, and the frames that carried them."""

    data: bytearray = field(default_factory=bytearray)
    frames: list[int] = field(default_factory=list)


@dataclass
class Assembled:
    """A complete APDU: its bytes, the frames that carried them, findings met on the way."""

    data: bytes
    frames: list[int]
    findings: list[Finding] = field(default_factory=list)


class HdlcReassembler:
    """Joins the information fields of segmented I-frames per link and direction.

    The LLC header is stripped from the first segment only (by position, never by value inside
    the APDU). A segment flood beyond `MAX_APDU` is dropped with a finding.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, bytes, bytes], Pending] = {}

    def feed(self, key: tuple[str, bytes, bytes], info: bytes, segmented: bool,
             frame: int) -> Assembled | None:
        found: list[Finding] = []
        part = self.pending.get(key)
        has_llc = info[:3] in (LLC_REQUEST, LLC_RESPONSE)
        if part is None:
            part = Pending()
            if has_llc:
                info = info[3:]
            elif segmented:
                found.append(Finding("warning", "hdlc.no-llc",
                                     "segment without LLC header and no segment pending: the"
                                     " first segment was not captured"))
            else:
                found.append(Finding("note", "hdlc.no-llc",
                                     "information field without LLC header: taken as a whole"
                                     " APDU"))
        part.data += info
        part.frames.append(frame)
        if len(part.data) > MAX_APDU:
            self.pending.pop(key, None)
            return Assembled(b"", part.frames, [Finding(
                "error", "hdlc.segment-flood",
                f"segmented APDU exceeds {MAX_APDU} bytes: segments dropped")])
        if segmented:
            self.pending[key] = part
            if len(self.pending) > MAX_PENDING_LINKS:
                oldest = next(iter(self.pending))
                self.pending.pop(oldest)
                found.append(Finding("error", "hdlc.segment-flood",
                                     f"segments pending on more than {MAX_PENDING_LINKS}"
                                     f" address pairs: those of {oldest[0]} were dropped"))
                return Assembled(b"", [frame], found)
            return None
        self.pending.pop(key, None)
        return Assembled(bytes(part.data), part.frames, found)

    def drop(self, link: str) -> list[Finding]:
        """Forget pending segments of a link (DISC, close); report what was incomplete."""
        gone = [k for k in self.pending if k[0] == link]
        for k in gone:
            del self.pending[k]
        return [Finding("warning", "hdlc.incomplete", "segmented APDU never completed")
                for _ in gone]


class BlockReassembler:
    """Joins general-block-transfer blocks per link and direction (the block data of all blocks
    is one APDU). Lost and repeated blocks are findings on the block that shows them."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], tuple[int, Pending]] = {}

    def feed(self, key: tuple[str, str], block_number: int, last: bool, data: bytes,
             frames: list[int]) -> tuple[Assembled | None, list[Finding]]:
        found: list[Finding] = []
        expected, part = self.pending.get(key, (block_number, Pending()))
        if block_number < expected:
            found.append(Finding("warning", "gbt.repeated-block",
                                 f"block {block_number} repeated (expected {expected})"))
            return None, found
        if block_number > expected:
            found.append(Finding("error", "gbt.lost-block",
                                 f"blocks {expected}..{block_number - 1} missing: the joined"
                                 " APDU is incomplete"))
        part.data += data
        part.frames.extend(f for f in frames if f not in part.frames)
        if len(part.data) > MAX_APDU:
            self.pending.pop(key, None)
            found.append(Finding("error", "gbt.flood",
                                 f"block transfer exceeds {MAX_APDU} bytes: dropped"))
            return None, found
        if not last:
            self.pending[key] = (block_number + 1, part)
            if len(self.pending) > MAX_PENDING_LINKS:
                oldest = next(iter(self.pending))
                self.pending.pop(oldest)
                found.append(Finding("error", "gbt.flood",
                                     f"block transfers pending on more than {MAX_PENDING_LINKS}"
                                     f" links: those of {oldest[0]} were dropped"))
            return None, found
        self.pending.pop(key, None)
        return Assembled(bytes(part.data), part.frames), found
