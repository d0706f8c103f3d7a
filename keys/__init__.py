"""Keys and cryptography for DLMS/COSEM security: keystore, AES-GCM, HLS, key wrap, ECC."""
