"""`-w OUT.pcapng`: each APDU (deciphered when possible) as wrapper-over-UDP-4059, commented."""

from __future__ import annotations

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import PcapNgWriter

from dissector.analysis.record import ApduRecord
from layers.wrapper import DLMS_PORT, Wrapper

CLIENT_IP, SERVER_IP = "10.0.0.1", "10.0.0.2"
# Locally administered MAC addresses: the file is the same on every machine, and Scapy looks
# nothing up (left out, it would take this host's interface address and resolve the other).
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CLIENT_PORT = 40000


PcapItem = tuple[bytes, str, float, str]


def pcap_item(rec: ApduRecord) -> PcapItem | None:
    """(APDU bytes, deciphered when possible; direction; time; comment) of a record."""
    plain = rec.plaintext()
    data = plain if plain is not None else bytes(rec.packet)
    if not data or rec.apdu.startswith("hdlc-"):
        return None
    sec = rec.security()
    words = [f"frames {','.join(map(str, rec.frames))}", f"link {rec.link}", rec.apdu]
    if sec is not None:
        verdict = {True: "tag OK", False: "tag FAILED", None: "tag not checked"}
        words.append(f"key={sec['key_kind']} {verdict[sec['tag_verified']]}")
        words.append("deciphered" if plain is not None else "still ciphered")
    if any(f.code == "output.key-withheld" for f in rec.findings):
        words.append("dedicated key withheld (zeroed)")
    return data, rec.direction, rec.time, "; ".join(words)


class PcapOut:
    """Writes one packet per APDU so that Wireshark's DLMS dissector shows the plaintext."""

    def __init__(self, path: str) -> None:
        self.writer = PcapNgWriter(path)

    def write(self, rec: ApduRecord) -> None:
        self.write_item(pcap_item(rec))

    def write_item(self, item: PcapItem | None) -> None:
        """Write what `pcap_item` extracted (the form worker processes hand over)."""
        if item is None:
            return
        data, direction, time, comment = item
        to_server = direction != "server->client"
        src, dst = (CLIENT_IP, SERVER_IP) if to_server else (SERVER_IP, CLIENT_IP)
        hw_src, hw_dst = (CLIENT_MAC, SERVER_MAC) if to_server else (SERVER_MAC, CLIENT_MAC)
        sport, dport = (CLIENT_PORT, DLMS_PORT) if to_server else (DLMS_PORT, CLIENT_PORT)
        wsrc, wdst = (16, 1) if to_server else (1, 16)
        pkt = Ether(src=hw_src, dst=hw_dst) / IP(src=src, dst=dst) / \
            UDP(sport=sport, dport=dport) / \
            Wrapper(source_wport=wsrc, destination_wport=wdst) / data
        pkt.time = time
        pkt.comments = [comment.encode()]
        self.writer.write(pkt)

    def close(self) -> None:
        self.writer.close()
