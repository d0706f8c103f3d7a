"""The pcap link types the project reads and writes (tcpdump.org's LINKTYPE_ values), in a
module of their own that imports nothing: the extcap answers Wireshark's queries with them
without loading the dissector."""

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
#: DLT_USER0: one HDLC frame (or sign-on line) per record, as `sniff serial -w` writes it.
LINKTYPE_USER0 = 147
LINKTYPE_LINUX_SLL2 = 276
#: Raw IPv4/IPv6 (DLT_RAW and its platform variants, LINKTYPE_IPV4, LINKTYPE_IPV6).
RAW_IP_LINKTYPES = frozenset({12, 14, 101, 228, 229})
