"""The ACSE APDUs (AARQ, AARE, RLRQ, RLRE) and the plain InitiateRequest/InitiateResponse read
without Scapy Packets: the same results as the Packet path (`APDU(data)`).

`decode_acse(data)` gives a `FastAcse`: the `packet_fields` JSON as text (what `json.dumps`
writes, made without the dict), `mysummary()` and the facts the association tracker and the
key context read of the packet (titles, mechanism, result, ...). A user-information holding a
plain initiate is read by `decode_initiate`; one holding a ciphered envelope is left ciphered
(`envelope_bytes`, `open_envelope()`; `text_with` puts the deciphered APDU's text where
`packet_fields` does). Anything the Packet path would attach a
finding to, and any component not read here, gives None: the Packet path decides.
tests/test_fast_acse.py proves the two agree.

Names, tables and summary words come from the layers: the summary sentences by calling the
layers' own `mysummary` (and properties) on stand-ins holding the values read here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from scapy.fields import Field

from .apdu import acse_components as ac
from .apdu.acse import AARE, AARQ, ACSEAPDU, COMPONENTS, RLRE, RLRQ
from .apdu.acse_fields import APPLICATION_CONTEXT_OID, MECHANISM_OID, MECHANISMS, dlms_id
from .apdu.initiate import InitiateRequest, InitiateResponse
from .fast_axdr import (
    Unsure,
    field_of,
    json_string,
    layer_name,
    named_text,
    named_texts,
    named_values,
    read_length,
    read_or_none,
    shows_names,
)
from .fastapdu import FastApdu
from .fastenvelope import FastEnvelope, read_envelope

_NS = SimpleNamespace


@dataclass(frozen=True, slots=True)
class FastInitiate(FastApdu):
    """A plain InitiateRequest/Response as the fast path read it: `FastApdu`'s attributes and
    what the tracker reads of the packet (`getattr(pkt, name, None)`; `conformance` as int)."""

    dedicated_key: bytes | None
    client_max_receive_pdu_size: int | None
    conformance: int | None
    server_max_receive_pdu_size: int | None

    @property
    def apdu_name(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class FastAcse:
    """An ACSE APDU as the fast path read it; each attribute equals the Packet path's
    (`getattr(APDU(data), name, None)`), `fields` and `summary` without deciphering. The
    `packet_fields` JSON text is `head`, the user-information APDU's JSON, `tail`
    (`text_with`). Deciphering changes no summary: a record shows
    `f"{summary} -> {inner.summary}"`, as `ApduRecord.info`."""

    name: str  # apdu_name: "aarq", "aare", "rlrq", "rlre"
    head: str  # the fields' JSON text up to the user-information APDU's (all of it if none)
    tail: str  # what follows the user-information APDU's JSON text ("" if none)
    summary: str  # APDU(data).mysummary() (deciphering does not change it)
    calling_ap_title: bytes | None
    responding_ap_title: bytes | None
    mechanism_id: int | None
    application_context_id: int | None
    authentication_value: bytes | None
    result: int | None
    diagnostic: tuple[str, int, str] | None
    reason: int | None
    initiate: FastInitiate | None  # the plain initiate in user-information
    envelope_bytes: bytes | None  # the ciphered APDU in user-information (read_envelope's input)
    # the user-information component's (start, stop) in the APDU's bytes, and where the
    # components begin (after the APDU's tag and length)
    user_information_span: tuple[int, int] | None
    components_at: int

    #: No packet encloses it (`keys.context._enclosing` stops here).
    parent = None
    underlayer = None

    @property
    def apdu_name(self) -> str:
        return self.name

    @property
    def user_information(self) -> FastInitiate | None:
        """The plain initiate of user-information (the Packet's `user_information` when it is
        an initiate-request/-response; a ciphered one is reached with `open_envelope`)."""
        return self.initiate

    @property
    def fields(self) -> dict[str, Any]:
        """packet_fields(APDU(data)), the user-information not deciphered."""
        return json.loads(self.text_with(None))

    def text_with(self, apdu_text: str | None) -> str:
        """The fields' JSON text with `apdu_text` as the user-information APDU's (the envelope
        with its "deciphered" APDU, as `packet_fields` gives it once the key context
        deciphered it); None: the APDU as read, not deciphered."""
        if not self.tail:
            return self.head
        if apdu_text is None:
            if self.initiate is not None:
                apdu_text = self.initiate.text
            else:
                env = read_envelope(self.envelope_bytes)  # type: ignore[arg-type]
                assert env is not None
                apdu_text = env.json_text()
        return self.head + apdu_text + self.tail

    def open_envelope(self) -> FastEnvelope | None:
        """A new `FastEnvelope` of the ciphered user-information, its `parent` this APDU (so
        the key context takes the IV title from it), or None when there is none."""
        if self.envelope_bytes is None:
            return None
        env = read_envelope(self.envelope_bytes)
        if env is not None:
            env.parent = self  # type: ignore[misc]  # an instance attribute over the class's
        return env


# --------------------------------------------------------------------------- names

_SHOWN: dict[tuple[int, int, int], str] = {}


def _shown(fld: Field, pkt: Any, value: int) -> str:
    """`value` of `fld` as JSON text, as `packet_fields` writes it for a packet like `pkt` (a
    stand-in whose attributes the field's names depend on): the field's own words when they
    say more than the number."""
    key = (id(fld), id(pkt), value)
    text = _SHOWN.get(key)
    if text is None:
        shown = fld.i2repr(pkt, value)
        name = shown if isinstance(shown, str) and shown not in (str(value), hex(value)) \
            and not shown.startswith("0x") else None
        if len(_SHOWN) >= 4096:
            _SHOWN.clear()
        text = _SHOWN[key] = named_text(value, name)
    return text


def _hex(value: bytes) -> str:
    """Bytes as `packet_fields` writes them, as JSON text."""
    return f'"{value.hex().upper()}"'


class _Spec:
    """What one component class writes: its layer name, the names of its tag bytes, its value
    field (the last one; its name is the JSON key), and how it is read."""

    __slots__ = ("cls", "inner", "key", "opening", "read", "tags", "value")

    def __init__(self, cls: type, read: Callable[..., Any]) -> None:
        self.cls = cls
        self.opening = f'{{"layer": {json_string(layer_name(cls))}, "ber_tag": '
        self.tags = named_texts(cls, "ber_tag")
        has_inner = any(f.name == "inner_tag" for f in cls.fields_desc)
        self.inner = named_texts(cls, "inner_tag") if has_inner else None
        self.value: Any = cls.fields_desc[-1]
        self.key = f", {json_string(self.value.name)}: "
        self.read = read

    def head(self, tag: int, size: int) -> str:
        """The component's JSON text up to its length (no closing brace)."""
        return f'{self.opening}{self.tags[tag]}, "length": {size}'


# --------------------------------------------------------------------------- components
# A reader takes (spec, buffer, tag, content start, content end, kind stand-in) and gives the
# component's JSON text and its value (what the APDU's properties and summary read).
_Read = tuple[str, Any]


def _inner(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The inner TLV of an EXPLICIT component (tag byte, length, where its value starts): it
    must fill the content exactly (else the Packet path finds a bad length or extra bytes)."""
    if end - pos < 2:
        raise Unsure("component too short")
    inner = buf[pos]
    if inner & 0x1F == 0x1F:
        raise Unsure("multi-byte inner tag")
    size, start = read_length(buf, pos + 1)
    if start + size != end:
        raise Unsure("inner length")
    return inner, size, start


def _wrapped(spec: _Spec, buf: bytes, tag: int, pos: int, end: int) -> tuple[str, int]:
    """The JSON text of an EXPLICIT component up to its value's key, and where its value
    starts."""
    inner, size, start = _inner(buf, pos, end)
    return (f'{spec.head(tag, end - pos)}, "inner_tag": {spec.inner[inner]}, '  # type: ignore[index]
            f'"inner_length": {size}{spec.key}'), start


def _octets(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    text, start = _wrapped(spec, buf, tag, pos, end)
    value = buf[start:end]
    return f"{text}{_hex(value)}}}", value


def _integer(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    text, start = _wrapped(spec, buf, tag, pos, end)
    value = int.from_bytes(buf[start:end], "big", signed=True)
    return f"{text}{_shown(spec.value, None, value)}}}", value


def _result(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    text, value = _integer(spec, buf, tag, pos, end, kind)
    if value not in ac.ASSOCIATION_RESULTS:
        raise Unsure("association result")
    return text, value


def _context(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    text, oid = _octets(spec, buf, tag, pos, end, kind)
    ctx = dlms_id(oid, APPLICATION_CONTEXT_OID)
    if ctx not in ac.APPLICATION_CONTEXTS:
        raise Unsure("application context")
    return text, ctx


def _mechanism(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    oid = buf[pos:end]
    mech = dlms_id(oid, MECHANISM_OID)
    if mech not in MECHANISMS:
        raise Unsure("mechanism")
    return f"{spec.head(tag, end - pos)}{spec.key}{_hex(oid)}}}", mech


def _bits(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    if end <= pos:
        raise Unsure("no unused-bits octet")
    return (f'{spec.head(tag, end - pos)}, "unused_bits": {buf[pos]}{spec.key}'
            f'{_hex(buf[pos + 1:end])}}}'), None


def _raw(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    if tag & 0x20 and pos < end:  # constructed: its first inner TLV must end inside it
        if buf[pos] & 0x1F == 0x1F:
            raise Unsure("multi-byte inner tag")
        size, start = read_length(buf, pos + 1)
        if start + size > end:
            raise Unsure("inner TLV runs past the component")
    return f"{spec.head(tag, end - pos)}{spec.key}{_hex(buf[pos:end])}}}", None


def _diagnostic(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    if end - pos < 4:
        raise Unsure("diagnostic too short")
    source = buf[pos]
    size, start = read_length(buf, pos + 1)
    if start + size != end:
        raise Unsure("diagnostic source length")
    head = (f'{spec.head(tag, end - pos)}, "source_tag": {_SOURCE_NAMES[source]}, '
            f'"source_length": {size}')
    inner, size, start = _inner(buf, start, end)
    value = int.from_bytes(buf[start:end], "big", signed=True)
    diagnostic = _DIAGNOSTICS.get((source, value))
    if diagnostic is None:
        raise Unsure("diagnostic source or value")
    return (f'{head}, "inner_tag": {spec.inner[inner]}, "inner_length": {size}'  # type: ignore[index]
            f'{spec.key}{_shown(spec.value, _SOURCE_STAND_INS[source], value)}}}'), diagnostic


def _reason(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    value = int.from_bytes(buf[pos:end], "big", signed=True)
    return f"{spec.head(tag, end - pos)}{spec.key}{_shown(spec.value, kind, value)}}}", value


def _user_information(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    """Its JSON text up to its APDU's (the whole component when it holds none) and (inner tag
    or None, the FastInitiate, the envelope's bytes)."""
    text, start = _wrapped(spec, buf, tag, pos, end)
    if start == end:  # no APDU (whatever the inner tag)
        return f"{text}null}}", (None, None, None)
    if buf[pos] != 0x04:
        raise Unsure("user-information not an OCTET STRING")
    inner = buf[start:end]
    first = inner[0]
    if first in _ENVELOPE_TAGS:
        if read_envelope(inner) is None:
            raise Unsure("envelope")
        return text, (first, None, inner)
    initiate = _INITIATES.get(first)
    got = initiate(inner) if initiate is not None else None
    if got is None:
        raise Unsure("user-information APDU")
    return text, (first, got, None)


#: The envelopes read inside user-information (glo-/ded-initiate, general-glo/ded-ciphering).
_ENVELOPE_TAGS = frozenset({0x21, 0x28, 0x41, 0x48, 0xDB, 0xDC})
_SOURCE_NAMES = named_texts(ac.ResultSourceDiagnostic, "source_tag")
_SOURCE_STAND_INS = {tag: _NS(source_tag=tag) for tag in ac.DIAGNOSTIC_SOURCES}
#: (source tag, value) -> the `diagnostic` property, for the values that take no finding.
_DIAGNOSTICS = {(tag, v): ac.ResultSourceDiagnostic.diagnostic.fget(_NS(source_tag=tag, value=v))
                for tag, (_, names) in ac.DIAGNOSTIC_SOURCES.items() for v in names}

_READERS = {_bits: (ac.ProtocolVersion, ac.ACSERequirements),
            _context: (ac.ApplicationContextName,), _mechanism: (ac.MechanismName,),
            _octets: (ac.CalledAPTitle, ac.CallingAPTitle, ac.RespondingAPTitle,
                      ac.CalledAEQualifier, ac.CallingAEQualifier, ac.RespondingAEQualifier,
                      ac.AuthenticationValue),
            _integer: (ac.CalledAPInvocationId, ac.CalledAEInvocationId,
                       ac.CallingAPInvocationId, ac.CallingAEInvocationId,
                       ac.RespondingAPInvocationId, ac.RespondingAEInvocationId),
            _raw: (ac.ApplicationContextNameList, ac.ImplementationInformation),
            _result: (ac.AssociationResult,), _diagnostic: (ac.ResultSourceDiagnostic,),
            _reason: (ac.ReleaseReason,), _user_information: (ac.UserInformation,)}
_SPECS = {cls: _Spec(cls, read) for read, classes in _READERS.items() for cls in classes}


# --------------------------------------------------------------------------- summaries

class _Said:
    """A component as `ACSEAPDU.mysummary` reads it: its summary, and a mechanism's id/name."""

    __slots__ = ("mechanism_id", "mechanism_name", "text")

    def __init__(self, text: str, mechanism_id: int | None = None) -> None:
        self.text = text
        self.mechanism_id = mechanism_id
        self.mechanism_name = None if mechanism_id is None else \
            ac.MechanismName.mechanism_name.fget(self)

    def mysummary(self) -> str:
        return self.text


def _cached(words: Callable[[Any], str]) -> Callable[[Any, Any], str]:
    """`words` of a value, remembered (values of small ranges: ids, results, inner tags)."""
    seen: dict[Any, str] = {}

    def said(value: Any, _kind: Any) -> str:
        text = seen.get(value)
        if text is None:
            text = seen[value] = words(value)
        return text
    return said


def _titled(cls: type) -> Callable[[Any, Any], str]:
    name = layer_name(cls)
    return lambda title, _kind: cls.mysummary(_NS(name=name, title=title))


#: Component class -> its summary from its value and the APDU kind's stand-in (the layer's
#: `mysummary` on a stand-in); the classes `ACSEAPDU.mysummary` does not show are left out.
_WORDS: dict[type, Callable[[Any, Any], str]] = {
    ac.ApplicationContextName: _cached(
        lambda ctx: ac.ApplicationContextName.mysummary(_NS(context_id=ctx))),
    ac.AssociationResult: _cached(lambda r: ac.AssociationResult.mysummary(_NS(result=r))),
    ac.ResultSourceDiagnostic: _cached(
        lambda diag: ac.ResultSourceDiagnostic.mysummary(_NS(diagnostic=diag))),
    ac.MechanismName: _cached(lambda m: ac.MechanismName.mysummary(_NS(mechanism_id=m))),
    ac.CallingAPTitle: _titled(ac.CallingAPTitle),
    ac.RespondingAPTitle: _titled(ac.RespondingAPTitle),
    ac.ReleaseReason: lambda r, kind: ac.ReleaseReason.mysummary(
        _NS(parent=kind.parent, reason=r)),
    ac.UserInformation: _cached(lambda tag: ac.UserInformation.mysummary(
        _NS(apdu=None if tag is None else _NS(tag=tag)))),
}


# --------------------------------------------------------------------------- the APDUs

class _Kind:
    """One ACSE APDU class: its names, its component readers by tag, what it must hold."""

    __slots__ = ("layer", "mandatory", "name", "opening", "readers", "stand_in", "tag")

    def __init__(self, cls: type[ACSEAPDU]) -> None:
        self.name = cls.apdu_name
        self.layer = layer_name(cls)
        self.tag = cls.apdu_tag
        tag_name = named_values(cls, "tag")[self.tag]
        self.opening = (f'{{"layer": {json_string(self.name)}, "tag": {{"value": {self.tag}, '
                        f'"name": {json.dumps(tag_name)}}}, "length": ')
        self.readers = {tag: _SPECS[comp] for tag, comp in COMPONENTS[cls.kind].items()
                        if comp in _SPECS}
        self.mandatory = frozenset(cls.mandatory)
        self.stand_in = _NS(parent=_NS(kind=cls.kind))  # a component of it, for its names


_KINDS = {k.tag: k for k in map(_Kind, (AARQ, AARE, RLRQ, RLRE))}


def _acse(buf: bytes) -> FastAcse:
    kind = _KINDS[buf[0]]
    size, pos = read_length(buf, 1)
    end = len(buf)
    if pos + size != end:
        raise Unsure("APDU length")
    texts: list[str] = []
    values: dict[type, Any] = {}
    readers = kind.readers
    user_at = span = None
    components_at = pos
    while pos < end:
        tag = buf[pos]
        spec = readers.get(tag)
        if spec is None:
            raise Unsure("component not read here")
        n, start = read_length(buf, pos + 1)
        stop = start + n
        if stop > end or spec.cls in values:
            raise Unsure("component length or repeated component")
        text, values[spec.cls] = spec.read(spec, buf, tag, start, stop, kind.stand_in)
        if spec.cls is ac.UserInformation:
            user_at, span = len(texts), (pos, stop)
        texts.append(text)
        pos = stop
    if not kind.mandatory.issubset(values):
        raise Unsure("mandatory component missing")
    user_tag, initiate, envelope = values.get(ac.UserInformation, (None, None, None))
    stand_in = kind.stand_in
    said = {cls: _Said(words(values[cls] if cls is not ac.UserInformation else user_tag,
                             stand_in), values[cls] if cls is ac.MechanismName else None)
            for cls, words in _WORDS.items() if cls in values}
    opening = f"{kind.opening}{size}, \"components\": ["
    if user_tag is None:  # no APDU in user-information: the whole text
        head, tail = f"{opening}{', '.join(texts)}]}}", ""
    else:  # split where the user-information's APDU goes
        head = opening + ", ".join(texts[:user_at + 1])  # type: ignore[operator]
        tail = "}" + "".join(f", {t}" for t in texts[user_at + 1:]) + "]}"  # type: ignore[operator]
    return FastAcse(kind.name, head, tail,
                    ACSEAPDU.mysummary(_NS(name=kind.layer, component=said.get)),
                    values.get(ac.CallingAPTitle), values.get(ac.RespondingAPTitle),
                    values.get(ac.MechanismName), values.get(ac.ApplicationContextName),
                    values.get(ac.AuthenticationValue), values.get(ac.AssociationResult),
                    values.get(ac.ResultSourceDiagnostic), values.get(ac.ReleaseReason),
                    initiate, envelope, span, components_at)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- initiate

class _Initiate:
    """What one initiate class writes: its opening (layer and tag), the names of its tag,
    usage flags and enumerations as JSON text; the keys of the fields both initiates end
    with (`_negotiation`: `qos`, its usage flag `qos_present`, `version`, `size`) and how many
    bytes follow the size (`trailing`)."""

    __slots__ = ("conformance", "layer", "names", "opening", "qos", "qos_names", "qos_present",
                 "size", "texts", "trailing", "version")

    def __init__(self, cls: type, named_fields: tuple[str, ...], *, qos: str, version: str,
                 size: str, trailing: int) -> None:
        self.layer: str = cls.apdu_name
        tag_name = named_values(cls, "tag")[cls.apdu_tag]
        self.opening = (f'{{"layer": {json_string(self.layer)}, "tag": '
                        f'{named_text(cls.apdu_tag, tag_name)}')
        self.qos = f", {json_string(qos)}: "
        self.qos_present = f", {json_string(qos + '_present')}: "
        self.version = f", {json_string(version)}: "
        self.size = f", {json_string(size)}: "
        self.trailing = trailing
        self.names = {n: named_texts(cls, n) for n in named_fields}
        self.qos_names = named_texts(cls, f"{qos}_present")
        self.conformance = field_of(cls, "conformance")
        self.texts: dict[int, str] = {}

    def conformance_text(self, value: int) -> str:
        """The conformance bits as `packet_fields` writes them (the FlagValue's text), as a
        JSON string."""
        text = self.texts.get(value)
        if text is None:
            if len(self.texts) >= 1024:
                self.texts.clear()
            text = self.texts[value] = json_string(str(self.conformance.m2i(None, value)))
        return text


_REQUEST = _Initiate(InitiateRequest, ("dedicated_key_present", "response_allowed_present",
                                       "response_allowed"),
                     qos="proposed_qos", version="proposed_dlms_version",
                     size="client_max_receive_pdu_size", trailing=0)
_RESPONSE = _Initiate(InitiateResponse, (), qos="negotiated_qos",
                      version="negotiated_dlms_version", size="server_max_receive_pdu_size",
                      trailing=2)  # the VAA name
_VAA = field_of(InitiateResponse, "vaa_name")


def _signed(b: int) -> int:
    return b - 256 if b > 127 else b


def _negotiation(buf: bytes, pos: int, out: list[str], how: _Initiate
                 ) -> tuple[int, int, int]:
    """What an initiate-request and -response both end with, from `pos`: the quality of
    service ([0] IMPLICIT Integer8 OPTIONAL), the DLMS version (Unsigned8), the conformance
    block (tag 5F1F, length 4) and the max receive PDU size (Unsigned16), then
    `how.trailing` bytes and no more. Its JSON text is added to `out` under `how`'s keys;
    gives the version, the conformance and the size."""
    flag = buf[pos]
    out += (how.qos_present, how.qos_names[flag])
    pos += 1
    if flag:
        out += (how.qos, str(_signed(buf[pos])))
        pos += 1
    version = buf[pos]
    pos += 1
    if buf[pos] != 0x5F or buf[pos + 1] != 0x1F or buf[pos + 2] != 4 or len(buf) < pos + 7:
        raise Unsure("conformance block")
    conformance = int.from_bytes(buf[pos + 4:pos + 7], "big")
    out += (how.version, str(version), ', "conformance_tag": 24351, "conformance_length": 4, '
            '"conformance_unused_bits": ', str(buf[pos + 3]), ', "conformance": ',
            how.conformance_text(conformance))
    pos += 7
    if pos + 2 + how.trailing != len(buf):
        raise Unsure(f"{how.layer} length")
    size = (buf[pos] << 8) | buf[pos + 1]
    out += (how.size, str(size))
    return version, conformance, size


def _initiate_request(buf: bytes) -> FastInitiate:
    names = _REQUEST.names
    flag = buf[1]
    out = [_REQUEST.opening, ', "dedicated_key_present": ', names["dedicated_key_present"][flag]]
    key = None
    pos = 2
    if flag:
        n, pos = read_length(buf, 2)
        key = buf[pos:pos + n]
        if len(key) != n:
            raise Unsure("dedicated key truncated")
        out += (', "dedicated_key_length": ', str(n), ', "dedicated_key": ', _hex(key))
        pos += n
    flag = buf[pos]
    out += (', "response_allowed_present": ', names["response_allowed_present"][flag])
    pos += 1
    if flag:
        out += (', "response_allowed": ', names["response_allowed"][buf[pos]])
        pos += 1
    version, conformance, size = _negotiation(buf, pos, out, _REQUEST)
    out.append("}")
    summary = InitiateRequest.mysummary(_NS(proposed_dlms_version=version,
                                            client_max_receive_pdu_size=size,
                                            dedicated_key=key))
    return FastInitiate(_REQUEST.layer, "".join(out), summary, None, None, None, None, key,
                        size, conformance, None)


def _initiate_response(buf: bytes) -> FastInitiate:
    out = [_RESPONSE.opening]
    version, conformance, size = _negotiation(buf, 1, out, _RESPONSE)
    vaa = (buf[-2] << 8) | buf[-1]
    out += (', "vaa_name": ', _shown(_VAA, None, vaa), "}")
    summary = InitiateResponse.mysummary(_NS(negotiated_dlms_version=version,
                                             server_max_receive_pdu_size=size, vaa_name=vaa))
    return FastInitiate(_RESPONSE.layer, "".join(out), summary, None, None, None, None,
                        None, None, conformance, size)


_INITIATES: dict[int, Callable[[bytes], FastInitiate]] = {
    0x01: _initiate_request, 0x08: _initiate_response}

#: Fields written here as plain numbers: the fast path is off (everything goes to the Packet
#: path) if a layer ever shows one of them by name, or the conformance as a number.
_PLAIN = frozenset({
    "length", "inner_length", "unused_bits", "source_length", "dedicated_key_length",
    "proposed_qos", "proposed_dlms_version", "negotiated_qos", "negotiated_dlms_version",
    "conformance_tag", "conformance_length", "conformance_unused_bits",
    "client_max_receive_pdu_size", "server_max_receive_pdu_size"})
ENABLED = not any(
    shows_names(field_of(cls, f.name)) for cls in (AARQ, AARE, RLRQ, RLRE, *_SPECS,
                                                   InitiateRequest, InitiateResponse)
    for f in cls.fields_desc if f.name in _PLAIN) and not any(
    isinstance(field_of(c, "conformance").m2i(None, 0), int)
    for c in (InitiateRequest, InitiateResponse))


def decode_initiate(data: bytes) -> FastInitiate | None:
    """The fast decoding of a plain initiate-request (0x01) / initiate-response (0x08), or
    None when the Packet path must decide."""
    return read_or_none(_INITIATES.get(data[0]) if data and ENABLED else None, data)


def decode_acse(data: bytes) -> FastAcse | None:
    """The fast decoding of an AARQ/AARE/RLRQ/RLRE, or None when the Packet path must decide."""
    return read_or_none(_acse if data and data[0] in _KINDS and ENABLED else None, data)


__all__ = ["ENABLED", "FastAcse", "FastInitiate", "decode_acse", "decode_initiate"]
