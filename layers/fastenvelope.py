"""The ciphered envelopes of the fast path (glo-/ded- service APDUs, general-glo/ded-ciphering)
read from bytes without Packets: what `layers.apdu.ciphered` dissects, for envelopes that
dissect without a finding; None for anything else (the Packet path then decides).

A `FastEnvelope` reads as the envelope packet does where the key context and the record look
(`family`, `plain_tag`, `ciphered`, `security_control`, `carried_title()`, ...), so
`keys.context.KeyContext.decipher` takes it as it takes the packet.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as json_string
from typing import Any

from .apdu.base import CIPHERED_TAGS, TAG_NAMES
from .security import TAG_LENGTH, sc_broadcast

#: Envelope tag -> (its name, tag family, the plain tag it carries; None for general-*).
ENVELOPES: dict[int, tuple[str, str, int | None]] = {}
for _plain, (_glo, _ded) in CIPHERED_TAGS.items():
    ENVELOPES[_glo] = (TAG_NAMES[_glo], "glo", _plain)
    ENVELOPES[_ded] = (TAG_NAMES[_ded], "ded", _plain)
ENVELOPES[0xDB] = (TAG_NAMES[0xDB], "glo", None)
ENVELOPES[0xDC] = (TAG_NAMES[0xDC], "ded", None)
#: Envelope tag -> the JSON text its fields start with (layer and tag).
_HEADS = {tag: f'{{"layer": {json_string(name)}, "tag": {{"value": {tag}, "name": '
               f'{json_string(name)}}}, '
          for tag, (name, _, _) in ENVELOPES.items()}


def _length(data: bytes, pos: int) -> tuple[int, int] | None:
    """An A-XDR length at `pos`: (value, position after it), None when malformed."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 1 + n > len(data):
        return None
    return int.from_bytes(data[pos + 1:pos + 1 + n], "big"), pos + 1 + n


class FastEnvelope:
    """A ciphered envelope as read from its bytes; `deciphered` is set by whoever deciphers
    it (the key context's result), and findings made meanwhile go in `__dict__` as on a
    packet (`layers.expert.add_finding`)."""

    parent = None
    underlayer = None

    def __init__(self, tag: int, title: bytes | None, content_length: int, sc: int, ic: int,
                 information: bytes, auth_tag: bytes | None) -> None:
        self.apdu_name, self.family, self.plain_tag = ENVELOPES[tag]
        self.tag = tag
        self.title = title
        self.content_length = content_length
        self.security_control = sc
        self.invocation_counter = ic
        self.information = information
        self.fields = {"authentication_tag": auth_tag} if auth_tag is not None else {}
        self.deciphered: Any = None

    @property
    def ciphered(self) -> FastEnvelope:
        """The ciphered content (security header, information, tag): the envelope itself."""
        return self

    def carried_title(self) -> bytes | None:
        return self.title or None

    def implied_key_kind(self) -> str:
        if self.family == "glo":
            return "global-broadcast" if sc_broadcast(self.security_control) \
                else "global-unicast"
        return "dedicated"

    def summary(self) -> str:
        """As the envelope packet's `mysummary`."""
        return f"{self.apdu_name} SC={self.security_control:02X} IC={self.invocation_counter}"

    def json_fields(self) -> dict[str, Any]:
        """The envelope's own fields as `packet_fields` gives them (without `deciphered`)."""
        return json.loads(self.json_text())

    def json_text(self, deciphered: str | None = None) -> str:
        """`json.dumps` of the envelope's fields as `packet_fields` gives them, made without
        the dict; with `deciphered` (the plaintext APDU's fields as JSON text) last."""
        title = self.title
        auth = self.fields.get("authentication_tag")
        return "".join((
            _HEADS[self.tag],
            "" if title is None else
            f'"system_title_length": {len(title)}, "system_title": "{title.hex().upper()}", ',
            f'"ciphered_content_length": {self.content_length}, "ciphered_content": '
            f'{{"layer": "ciphered-content", "security_control": {self.security_control}, '
            f'"invocation_counter": {self.invocation_counter}, '
            f'"information": "{self.information.hex().upper()}"',
            "}" if auth is None else f', "authentication_tag": "{auth.hex().upper()}"}}',
            "}" if deciphered is None else f', "deciphered": {deciphered}}}'))


def read_envelope(data: bytes) -> FastEnvelope | None:
    """The envelope `data` holds when it is a glo-/ded- service APDU or general-glo/ded-
    ciphering whose lengths match the bytes exactly, else None."""
    if not data or data[0] not in ENVELOPES:
        return None
    tag = data[0]
    pos = 1
    title = None
    if tag in (0xDB, 0xDC):
        got = _length(data, pos)
        if got is None or got[0] == 0 or got[1] + got[0] > len(data):
            return None
        title = data[got[1]:got[1] + got[0]]
        pos = got[1] + got[0]
    got = _length(data, pos)
    if got is None:
        return None
    size, pos = got
    if size < 5 or pos + size != len(data):
        return None
    sc = data[pos]
    tag_len = TAG_LENGTH if sc & 0x10 else 0
    if size < 5 + tag_len:
        return None
    ic = int.from_bytes(data[pos + 1:pos + 5], "big")
    end = len(data) - tag_len
    return FastEnvelope(tag, title, size, sc, ic, data[pos + 5:end],
                        data[end:] if tag_len else None)
