"""Analysis: PDUs -> dissected, deciphered APDU records (reassembly, keys, association tracking)."""
