"""xDLMS and ACSE APDUs, dispatched by their first byte through `APDU`."""
