"""The ACSE APDUs (AARQ, AARE, RLRQ, RLRE) and the plain InitiateRequest/InitiateResponse read
without Scapy Packets: the same results as the Packet path (`APDU(data)`).

`decode_acse(data)` gives a `FastAcse`: the `packet_fields` JSON, `mysummary()` and the facts
the association tracker and the key context read of the packet (titles, mechanism, result,
...). A user-information holding a plain initiate is read by `decode_initiate`; one holding a
ciphered envelope is left ciphered (`envelope_bytes`, `open_envelope()`; `fields_with` puts
the deciphered APDU where `packet_fields` does). Anything the Packet path would attach a
finding to, and any component not read here, gives None: the Packet path decides.
tests/test_fast_acse.py proves the two agree.

Names, tables and summary words come from the layers: the summary sentences by calling the
layers' own `mysummary` (and properties) on stand-ins holding the values read here.
"""

from __future__ import annotations

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
    json_text,
    layer_name,
    named,
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
    (`getattr(APDU(data), name, None)`), `fields` and `summary` without deciphering. A plain
    initiate's `fields` is what sits at `user_information_path` in `fields`. Deciphering
    changes no summary: a record shows `f"{summary} -> {inner.summary}"`, as `ApduRecord.info`."""

    name: str  # apdu_name: "aarq", "aare", "rlrq", "rlre"
    fields: dict[str, Any]  # packet_fields(APDU(data)), the user-information not deciphered
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
    user_information_path: tuple[str, int, str] | None  # where its APDU sits in `fields`
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

    def open_envelope(self) -> FastEnvelope | None:
        """A new `FastEnvelope` of the ciphered user-information, its `parent` this APDU (so
        the key context takes the IV title from it), or None when there is none."""
        if self.envelope_bytes is None:
            return None
        env = read_envelope(self.envelope_bytes)
        if env is not None:
            env.parent = self  # type: ignore[misc]  # an instance attribute over the class's
        return env

    def fields_with(self, deciphered: dict[str, Any] | None) -> dict[str, Any]:
        """`fields` with the envelope's "deciphered" object, as `packet_fields` gives them once
        the key context deciphered it (`deciphered`: the plaintext APDU's fields; None when
        not deciphered). The parts on the path are copied; `fields` is left as it is."""
        path = self.user_information_path
        if deciphered is None or path is None or self.envelope_bytes is None:
            return self.fields
        out = dict(self.fields)
        comps = out[path[0]] = list(out[path[0]])
        comp = comps[path[1]] = dict(comps[path[1]])
        env = comp[path[2]] = dict(comp[path[2]])
        env["deciphered"] = deciphered
        return out


# --------------------------------------------------------------------------- names

_MISSING = object()
_SHOWN: dict[tuple[int, int, int], str | None] = {}


def _shown(fld: Field, pkt: Any, value: int) -> Any:
    """`value` of `fld` as `packet_fields` writes it for a packet like `pkt` (a stand-in whose
    attributes the field's names depend on): the field's own words when they say more than
    the number."""
    key = (id(fld), id(pkt), value)
    name = _SHOWN.get(key, _MISSING)
    if name is _MISSING:
        shown = fld.i2repr(pkt, value)
        name = shown if isinstance(shown, str) and shown not in (str(value), hex(value)) \
            and not shown.startswith("0x") else None
        if len(_SHOWN) >= 4096:
            _SHOWN.clear()
        _SHOWN[key] = name
    return value if name is None else {"value": value, "name": name}


class _Spec:
    """What one component class writes: its layer name, the names of its tag bytes, its value
    field (the last one; its name is the JSON key), and how it is read."""

    __slots__ = ("cls", "inner", "key", "layer", "read", "tags", "value")

    def __init__(self, cls: type, read: Callable[..., Any]) -> None:
        self.cls = cls
        self.layer = layer_name(cls)
        self.tags = named_values(cls, "ber_tag")
        has_inner = any(f.name == "inner_tag" for f in cls.fields_desc)
        self.inner = named_values(cls, "inner_tag") if has_inner else None
        self.value: Any = cls.fields_desc[-1]
        self.key: str = self.value.name
        self.read = read

    def head(self, tag: int, size: int) -> dict[str, Any]:
        return {"layer": self.layer, "ber_tag": named(self.tags, tag), "length": size}


# --------------------------------------------------------------------------- components
# A reader takes (spec, buffer, tag, content start, content end, kind stand-in) and gives the
# component's JSON and its value (what the APDU's properties and summary read).
_Read = tuple[dict[str, Any], Any]


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


def _wrapped(spec: _Spec, buf: bytes, tag: int, pos: int, end: int
             ) -> tuple[dict[str, Any], int]:
    """The JSON of an EXPLICIT component up to its inner length, and where its value starts."""
    inner, size, start = _inner(buf, pos, end)
    out = spec.head(tag, end - pos)
    out["inner_tag"] = named(spec.inner, inner)  # type: ignore[arg-type]
    out["inner_length"] = size
    return out, start


def _octets(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    out, start = _wrapped(spec, buf, tag, pos, end)
    value = buf[start:end]
    out[spec.key] = value.hex().upper()
    return out, value


def _integer(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    out, start = _wrapped(spec, buf, tag, pos, end)
    value = int.from_bytes(buf[start:end], "big", signed=True)
    out[spec.key] = _shown(spec.value, None, value)
    return out, value


def _result(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    out, value = _integer(spec, buf, tag, pos, end, kind)
    if value not in ac.ASSOCIATION_RESULTS:
        raise Unsure("association result")
    return out, value


def _context(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    out, oid = _octets(spec, buf, tag, pos, end, kind)
    ctx = dlms_id(oid, APPLICATION_CONTEXT_OID)
    if ctx not in ac.APPLICATION_CONTEXTS:
        raise Unsure("application context")
    return out, ctx  # type: ignore[return-value]


def _mechanism(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    oid = buf[pos:end]
    mech = dlms_id(oid, MECHANISM_OID)
    if mech not in MECHANISMS:
        raise Unsure("mechanism")
    out = spec.head(tag, end - pos)
    out[spec.key] = oid.hex().upper()
    return out, mech  # type: ignore[return-value]


def _bits(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    if end <= pos:
        raise Unsure("no unused-bits octet")
    out = spec.head(tag, end - pos)
    out["unused_bits"] = buf[pos]
    out[spec.key] = buf[pos + 1:end].hex().upper()
    return out, None


def _raw(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    if tag & 0x20 and pos < end:  # constructed: its first inner TLV must end inside it
        if buf[pos] & 0x1F == 0x1F:
            raise Unsure("multi-byte inner tag")
        size, start = read_length(buf, pos + 1)
        if start + size > end:
            raise Unsure("inner TLV runs past the component")
    out = spec.head(tag, end - pos)
    out[spec.key] = buf[pos:end].hex().upper()
    return out, None


def _diagnostic(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    if end - pos < 4:
        raise Unsure("diagnostic too short")
    source = buf[pos]
    size, start = read_length(buf, pos + 1)
    if start + size != end:
        raise Unsure("diagnostic source length")
    out = spec.head(tag, end - pos)
    out["source_tag"] = named(_SOURCE_NAMES, source)
    out["source_length"] = size
    inner, size, start = _inner(buf, start, end)
    value = int.from_bytes(buf[start:end], "big", signed=True)
    diagnostic = _DIAGNOSTICS.get((source, value))
    if diagnostic is None:
        raise Unsure("diagnostic source or value")
    out["inner_tag"] = named(spec.inner, inner)  # type: ignore[arg-type]
    out["inner_length"] = size
    out[spec.key] = _shown(spec.value, _SOURCE_STAND_INS[source], value)
    return out, diagnostic


def _reason(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    value = int.from_bytes(buf[pos:end], "big", signed=True)
    out = spec.head(tag, end - pos)
    out[spec.key] = _shown(spec.value, kind, value)
    return out, value


def _user_information(spec: _Spec, buf: bytes, tag: int, pos: int, end: int, kind: Any) -> _Read:
    """Its JSON and (inner tag or None, the FastInitiate, the envelope's bytes)."""
    out, start = _wrapped(spec, buf, tag, pos, end)
    if start == end:  # no APDU (whatever the inner tag)
        out[spec.key] = None
        return out, (None, None, None)
    if buf[pos] != 0x04:
        raise Unsure("user-information not an OCTET STRING")
    inner = buf[start:end]
    first = inner[0]
    if first in _ENVELOPE_TAGS:
        env = read_envelope(inner)
        if env is None:
            raise Unsure("envelope")
        out[spec.key] = env.json_fields()
        return out, (first, None, inner)
    initiate = _INITIATES.get(first)
    got = initiate(inner) if initiate is not None else None
    if got is None:
        raise Unsure("user-information APDU")
    out[spec.key] = got.fields
    return out, (first, got, None)


#: The envelopes read inside user-information (glo-/ded-initiate, general-glo/ded-ciphering).
_ENVELOPE_TAGS = frozenset({0x21, 0x28, 0x41, 0x48, 0xDB, 0xDC})
_SOURCE_NAMES = named_values(ac.ResultSourceDiagnostic, "source_tag")
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

    __slots__ = ("layer", "mandatory", "name", "readers", "stand_in", "tag", "tag_name")

    def __init__(self, cls: type[ACSEAPDU]) -> None:
        self.name = cls.apdu_name
        self.layer = layer_name(cls)
        self.tag = cls.apdu_tag
        self.tag_name = named_values(cls, "tag")[self.tag]
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
    comps: list[dict[str, Any]] = []
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
        out, values[spec.cls] = spec.read(spec, buf, tag, start, stop, kind.stand_in)
        if spec.cls is ac.UserInformation:
            user_at, span = len(comps), (pos, stop)
        comps.append(out)
        pos = stop
    if not kind.mandatory.issubset(values):
        raise Unsure("mandatory component missing")
    user_tag, initiate, envelope = values.get(ac.UserInformation, (None, None, None))
    stand_in = kind.stand_in
    said = {cls: _Said(words(values[cls] if cls is not ac.UserInformation else user_tag,
                             stand_in), values[cls] if cls is ac.MechanismName else None)
            for cls, words in _WORDS.items() if cls in values}
    fields = {"layer": kind.name, "tag": {"value": kind.tag, "name": kind.tag_name},
              "length": size, "components": comps}
    path = ("components", user_at, "apdu") if user_tag is not None else None
    return FastAcse(kind.name, fields, ACSEAPDU.mysummary(_NS(name=kind.layer, component=said.get)),
                    values.get(ac.CallingAPTitle), values.get(ac.RespondingAPTitle),
                    values.get(ac.MechanismName), values.get(ac.ApplicationContextName),
                    values.get(ac.AuthenticationValue), values.get(ac.AssociationResult),
                    values.get(ac.ResultSourceDiagnostic), values.get(ac.ReleaseReason),
                    initiate, envelope, path, span, components_at)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- initiate

class _Initiate:
    """What one initiate class writes: names of its tag, usage flags and enumerations; the
    names of the fields both initiates end with (`_negotiation`: `qos`, its usage flag
    `qos_present`, `version`, `size`) and how many bytes follow the size (`trailing`)."""

    __slots__ = ("conformance", "layer", "names", "qos", "qos_present", "size", "tag", "texts",
                 "trailing", "version")

    def __init__(self, cls: type, named_fields: tuple[str, ...], *, qos: str, version: str,
                 size: str, trailing: int) -> None:
        self.layer: str = cls.apdu_name
        self.tag: dict[str, Any] = named(named_values(cls, "tag"), cls.apdu_tag)
        self.qos = qos
        self.qos_present = f"{qos}_present"
        self.version = version
        self.size = size
        self.trailing = trailing
        self.names = {n: named_values(cls, n) for n in (*named_fields, self.qos_present)}
        self.conformance = field_of(cls, "conformance")
        self.texts: dict[int, str] = {}

    def conformance_text(self, value: int) -> str:
        """The conformance bits as `packet_fields` writes them (the FlagValue's text)."""
        text = self.texts.get(value)
        if text is None:
            if len(self.texts) >= 1024:
                self.texts.clear()
            text = self.texts[value] = str(self.conformance.m2i(None, value))
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


def _conformance(buf: bytes, pos: int, out: dict[str, Any], how: _Initiate) -> tuple[int, int]:
    """The conformance block at `pos` (tag 5F1F, length 4): its value and where it ends."""
    if buf[pos] != 0x5F or buf[pos + 1] != 0x1F or buf[pos + 2] != 4 or len(buf) < pos + 7:
        raise Unsure("conformance block")
    value = int.from_bytes(buf[pos + 4:pos + 7], "big")
    out["conformance_tag"] = 0x5F1F
    out["conformance_length"] = 4
    out["conformance_unused_bits"] = buf[pos + 3]
    out["conformance"] = how.conformance_text(value)
    return value, pos + 7


def _negotiation(buf: bytes, pos: int, out: dict[str, Any], how: _Initiate
                 ) -> tuple[int, int, int]:
    """What an initiate-request and -response both end with, from `pos`: the quality of
    service ([0] IMPLICIT Integer8 OPTIONAL), the DLMS version (Unsigned8), the conformance
    block and the max receive PDU size (Unsigned16), then `how.trailing` bytes and no more.
    Written into `out` under `how`'s names; gives the version, the conformance and the size."""
    flag = buf[pos]
    out[how.qos_present] = named(how.names[how.qos_present], flag)
    pos += 1
    if flag:
        out[how.qos] = _signed(buf[pos])
        pos += 1
    version = buf[pos]
    out[how.version] = version
    conformance, pos = _conformance(buf, pos + 1, out, how)
    if pos + 2 + how.trailing != len(buf):
        raise Unsure(f"{how.layer} length")
    size = (buf[pos] << 8) | buf[pos + 1]
    out[how.size] = size
    return version, conformance, size


def _initiate_request(buf: bytes) -> FastInitiate:
    names = _REQUEST.names
    out: dict[str, Any] = {"layer": _REQUEST.layer, "tag": dict(_REQUEST.tag)}
    flag = buf[1]
    out["dedicated_key_present"] = named(names["dedicated_key_present"], flag)
    key = None
    pos = 2
    if flag:
        n, pos = read_length(buf, 2)
        key = buf[pos:pos + n]
        if len(key) != n:
            raise Unsure("dedicated key truncated")
        out["dedicated_key_length"] = n
        out["dedicated_key"] = key.hex().upper()
        pos += n
    flag = buf[pos]
    out["response_allowed_present"] = named(names["response_allowed_present"], flag)
    pos += 1
    if flag:
        out["response_allowed"] = named(names["response_allowed"], buf[pos])
        pos += 1
    version, conformance, size = _negotiation(buf, pos, out, _REQUEST)
    summary = InitiateRequest.mysummary(_NS(proposed_dlms_version=version,
                                            client_max_receive_pdu_size=size,
                                            dedicated_key=key))
    return FastInitiate(_REQUEST.layer, json_text(out), summary, None, None, None, None, key, size,
                        conformance, None)


def _initiate_response(buf: bytes) -> FastInitiate:
    out: dict[str, Any] = {"layer": _RESPONSE.layer, "tag": dict(_RESPONSE.tag)}
    version, conformance, size = _negotiation(buf, 1, out, _RESPONSE)
    vaa = (buf[-2] << 8) | buf[-1]
    out["vaa_name"] = _shown(_VAA, None, vaa)
    summary = InitiateResponse.mysummary(_NS(negotiated_dlms_version=version,
                                             server_max_receive_pdu_size=size, vaa_name=vaa))
    return FastInitiate(_RESPONSE.layer, json_text(out), summary, None, None, None, None,
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
