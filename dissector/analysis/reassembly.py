"""Reassembly of APDUs split across HDLC frames (segmentation bit), M-Bus long frames (DLMS
segments) and general-block-transfer blocks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from layers.expert import Finding
from layers.hdlc_bytes import LLC_REQUEST, LLC_RESPONSE
from layers.mbus import DlmsSegment

MAX_APDU = 1 << 20  # an APDU larger than this is a flood, not a meter
MAX_PENDING_LINKS = 8  # address pairs with a segmented APDU in flight at once


@dataclass(slots=True)
class Pending:
    """Bytes gathered so far for one APDU, and the frames that carried them."""

    data: bytearray = field(default_factory=bytearray)
    frames: list[int] = field(default_factory=list)


@dataclass(slots=True)
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


@dataclass(slots=True)
class _MbusPending:
    data: bytearray
    frames: list[int]
    next_sequence: int
    tsaps: tuple[int | None, int | None]
    findings: list[Finding]


class MbusReassembler:
    """Joins the DLMS segments of M-Bus long frames into APDUs.

    Frames of one APDU share the link, the A field and the direction (C bit PRM); segments are
    numbered from 0 (modulo 16) and the last has CI bit 4 set. A gap in the numbering drops the
    APDU (`mbus.segment-lost`); STSAP/DTSAP that change within an APDU are reported
    (`mbus.tsap-mismatch`) and the segment is joined anyway.
    """

    def __init__(self) -> None:
        self.pending: dict[tuple[str, int, bool], _MbusPending] = {}

    def feed(self, link: str, seg: DlmsSegment, frames: Sequence[int],
             findings: Sequence[Finding] = ()) -> tuple[Assembled | None, list[Finding]]:
        """Add one segment; returns (the APDU when complete, findings about lost segments)."""
        key = (link, *seg.key)
        where = ",".join(map(str, frames))
        lost: list[Finding] = []
        part = self.pending.get(key)
        if part is not None and seg.sequence != part.next_sequence:
            del self.pending[key]
            lost.append(Finding(
                "warning", "mbus.segment-lost",
                f"A={seg.address}: expected segment {part.next_sequence}, frame {where} brings"
                f" segment {seg.sequence}: the APDU of frames"
                f" {','.join(map(str, part.frames))} is dropped"))
            part = None
        if part is None:
            if seg.sequence != 0:
                lost.append(Finding(
                    "warning", "mbus.segment-lost",
                    f"A={seg.address}: segment {seg.sequence} in frame {where} without the"
                    f" segments before it: dropped"))
                return None, lost
            part = _MbusPending(bytearray(), [], 0, (seg.stsap, seg.dtsap), [])
        elif (seg.stsap, seg.dtsap) != part.tsaps:
            part.findings.append(Finding(
                "warning", "mbus.tsap-mismatch",
                f"segment {seg.sequence} (frame {where}) has STSAP/DTSAP"
                f" {_tsaps(seg.stsap, seg.dtsap)}, segment 0 had {_tsaps(*part.tsaps)}"))
        part.data += seg.data
        part.frames.extend(f for f in frames if f not in part.frames)
        part.findings.extend(f for f in findings if f not in part.findings)
        part.next_sequence = (seg.sequence + 1) & 0x0F
        if len(part.data) > MAX_APDU:
            self.pending.pop(key, None)
            lost.append(Finding("error", "mbus.segment-flood",
                                f"segmented APDU exceeds {MAX_APDU} bytes: segments dropped"))
            return None, lost
        if not seg.last:
            self.pending[key] = part
            return None, lost
        self.pending.pop(key, None)
        return Assembled(bytes(part.data), part.frames, part.findings), lost

    def finish(self) -> list[Finding]:
        """End of input: the APDUs whose last segment never came."""
        out = [Finding("warning", "mbus.incomplete",
                       f"{k[0]} A={k[1]}: segmented APDU never completed (frames"
                       f" {','.join(map(str, p.frames))})") for k, p in self.pending.items()]
        self.pending.clear()
        return out


def _tsaps(stsap: int | None, dtsap: int | None) -> str:
    return "absent" if stsap is None else f"{stsap}/{dtsap}"
