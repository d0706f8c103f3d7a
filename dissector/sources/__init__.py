"""Sources: capture files (pcap, pcapng), link layers, IP, TCP reassembly, pasted hex -> records."""
