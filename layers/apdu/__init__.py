"""xDLMS and ACSE APDUs, dispatched by their first byte through `APDU`.

Importing this package registers every APDU class.
"""

from . import (  # noqa: F401 - imported to register their classes
    access,
    acse,
    action,
    ciphered,
    gbt,
    get,
    initiate,
    notification,
    set,
    sn,
)
from .base import APDU, APDU_CLASSES, TAG_NAMES, UnknownAPDU, apdu_name, register

__all__ = ["APDU", "APDU_CLASSES", "TAG_NAMES", "UnknownAPDU", "apdu_name", "register"]
