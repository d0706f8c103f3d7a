"""xDLMS and ACSE APDUs, dispatched by their first byte through `APDU`.

Importing this package registers every APDU class.
"""

from importlib import import_module

from .base import APDU, APDU_CLASSES, TAG_NAMES, UnknownAPDU, apdu_name, register

for _module in ("ciphered", "acse", "initiate", "get", "set", "action", "notification",
                "access", "sn", "gbt"):
    try:
        import_module(f"{__name__}.{_module}")
    except Exception:  # noqa: BLE001  DEV: modules land one by one
        pass

__all__ = ["APDU", "APDU_CLASSES", "TAG_NAMES", "UnknownAPDU", "apdu_name", "register"]
