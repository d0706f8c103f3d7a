"""Output: records -> summary lines, trees, JSON, the pcapng export; display filters, redaction."""
