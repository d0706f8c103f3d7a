"""Association tracker and expert analysis: titles, mechanism, dedicated key, HLS, IC, pairing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from scapy.packet import Packet

from dissector.analysis.record import ApduRecord
from keys.context import Association
from keys.hls import HlsInputError, verify_hls
from keys.keystore import Keystore, MeterKeys
from keys.secret import SecretKey
from keys.wrap import KeyTransferFormatError, UnwrapError, key_id_name, unwrap_key_transfer
from layers.apdu.initiate import conformance_names
from layers.expert import Finding
from layers.tree import iter_tree

MECHANISM_NAMES = {0: "lowest", 1: "low (LLS)", 2: "high (manufacturer specific)",
                   3: "high MD5", 4: "high SHA-1", 5: "high GMAC", 6: "high SHA-256",
                   7: "high ECDSA"}
RESPONSE_OF = {"get-request": "get-response", "set-request": "set-response",
               "action-request": "action-response", "access-request": "access-response",
               "read-request": "read-response", "write-request": "write-response",
               "aarq": "aare", "rlrq": "rlre", "initiate-request": "initiate-response"}
ERROR_APDUS = ("confirmed-service-error", "exception-response")
MAX_PENDING = 256
_PORT = re.compile(r":\d+(?=[-\s]|$)")
MAX_ADDRESSES = 65536  # server titles remembered per address (key search order only)
MAX_ASSOCIATIONS = 1024  # links followed at once; older ones are summarised and dropped


def plain_name(name: str) -> str:
    """`glo-get-request` -> `get-request`."""
    for prefix in ("glo-", "ded-"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


@dataclass
class AssociationState:
    """One application association on one link."""

    link: str
    keys: Association = field(default_factory=Association)
    mechanism: int | None = None
    context_id: int | None = None
    ctos: bytes | None = None
    stoc: bytes | None = None
    aarq_frame: int | None = None
    authenticated: bool = False
    hls_pending: bool = False
    created: int = 0  # position in the capture of the unit that opened it
    pending: list[ApduRecord] = field(default_factory=list)
    last_ic: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    shared_title_noted: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    key_use: dict[str, int] = field(default_factory=dict)
    ic_range: dict[str, list[int]] = field(default_factory=dict)
    findings: int = 0
    errors: int = 0
    new_keys: list[tuple[Any, int, SecretKey]] = field(default_factory=list)
    conformance: int | None = None
    max_pdu: dict[str, int] = field(default_factory=dict)

    def release(self) -> None:
        """The association ended: the dedicated key dies with it."""
        self.keys.dedicated_key = None
        self.keys.dedicated_source = ""
        self.hls_pending = False
        self.pending.clear()


def _first(pkt: Packet | None, cls_name: str) -> Packet | None:
    return next((p for p in iter_tree(pkt) if type(p).__name__ == cls_name), None)


def _initiate(rec: ApduRecord) -> Any:
    """The InitiateRequest/Response of an AARQ/AARE: deciphered, or in clear."""
    fast = rec.fast
    if fast is not None and fast.acse is not None:
        return fast.apdu
    inner = rec.inner()
    if inner is not None:
        return inner
    user = getattr(rec.packet, "user_information", None)
    return user if getattr(user, "apdu_name", "").startswith("initiate-") else None


def _octet_string(pkt: Packet | None) -> bytes | None:
    """The first A-XDR octet-string value in a tree (the HLS f() parameter or return value)."""
    p = _first(pkt, "DataOctetString")
    return bytes(p.value) if p is not None and p.value is not None else None


def invoke_id(pkt: Packet | None) -> int | None:
    """The invoke-id of a service APDU (plain or deciphered), if it has one."""
    for p in iter_tree(pkt):
        if "invoke_id_and_priority" in p.fields:
            return int(p.fields["invoke_id_and_priority"]) & 0x0F
        if "long_invoke_id_and_priority" in p.fields:
            return int(p.fields["long_invoke_id_and_priority"]) & 0xFFFFFF
    return None


def method_of(pkt: Packet | None) -> tuple[int, int] | None:
    """(class_id, method_id) of the first COSEM method descriptor in the tree."""
    desc = _first(pkt, "CosemMethodDescriptor")
    if desc is None:
        return None
    return int(desc.class_id), int(desc.method_id)


def effective(rec: ApduRecord) -> Packet:
    """The APDU that means something: the deciphered inner APDU of an envelope, else the APDU."""
    return rec.effective()


def _fact(rec: ApduRecord, name: str) -> Any:
    """A fact of the APDU that means something, from the fast path's reading of it, else
    from its Packets: `invoke_id`, `method`, `result` (the first in the tree) or
    `octet_string` (the first A-XDR octet-string: an HLS f() value)."""
    fast = rec.fast
    if fast is not None:
        return fast.fact(name)
    pkt = rec.effective()
    if name == "invoke_id":
        return invoke_id(pkt)
    if name == "method":
        return method_of(pkt)
    if name == "result":
        return next((p.fields.get("result") for p in iter_tree(pkt) if "result" in p.fields),
                    None)
    return _octet_string(pkt)


class Tracker:
    """Follows associations per link and adds expert findings to records."""

    def __init__(self, keystore: Keystore | None = None) -> None:
        self.associations: dict[str, AssociationState] = {}
        self.closed: list[tuple[int, dict[str, Any]]] = []  # (position closed, summary)
        self.keep_summaries = True
        self.position = 0  # of the unit being dissected in its capture (set by the dissector)
        self.server_titles: dict[str, bytes] = {}  # address -> title its last AARE gave
        # address -> keystore entries as the key_transfers seen there left them
        self.transferred: dict[str, dict[str, MeterKeys]] = {}
        self.keystore = keystore or Keystore([])

    def get(self, link: str) -> AssociationState:
        st = self.associations.get(link)
        if st is None:
            if len(self.associations) >= MAX_ASSOCIATIONS:
                for name in list(self.associations)[: MAX_ASSOCIATIONS // 4]:
                    self.forget(name, keep_summary=self.keep_summaries)
            st = self.associations[link] = AssociationState(link, created=self.position)
            st.keys.server_title_hint = self.server_titles.get(address_of(link))
            st.keys.overrides.update(self.transferred.get(address_of(link), {}))
        return st

    def forget(self, link: str, keep_summary: bool) -> None:
        """Drop a finished link's state (memory stays flat over long captures)."""
        st = self.associations.pop(link, None)
        if st is not None and keep_summary:
            self.closed.append((self.position, describe_state(st)))

    def summaries(self) -> list[dict[str, Any]]:
        """--stats: closed associations, then the ones still open."""
        return [s for _, s in self.ranked_summaries()]

    def ranked_summaries(self) -> list[tuple[tuple[int, int], dict[str, Any]]]:
        """`summaries` with their place in a serial run: (0, position closed) for closed ones,
        then (1, position opened); sorting by it merges the summaries of several dissectors
        that each saw part of one capture into the serial order."""
        return [((0, pos), s) for pos, s in self.closed] + [
            ((1, st.created), describe_state(st)) for st in self.associations.values()]

    def close(self, link: str) -> None:
        st = self.associations.get(link)
        if st is not None:
            st.release()

    # -- before dissection: nothing; after: observe ------------------------------------
    def observe(self, rec: ApduRecord, st: AssociationState) -> None:
        name = rec.apdu
        st.counts[name] = st.counts.get(name, 0) + 1
        meaning = rec.meaning()
        if name == "aarq":
            self._aarq(rec, st)
        elif name == "aare":
            self._aare(rec, st)
        elif name in ("rlrq", "rlre"):
            if name == "rlre":
                st.release()
        self._security(rec, st)
        if plain_name(name) == "action-request" or meaning == "action-request":
            self._hls_request(rec, st)
        if meaning == "action-response" and st.hls_pending:
            self._hls_response(rec, st)
        if meaning == "action-request" and _fact(rec, "method") == (64, 2):
            self._key_transfer(rec, st, effective(rec))
        if meaning == "action-response" and st.new_keys:
            self._apply_keys(rec, st)
        self._pair(rec, st, meaning)
        for f in rec.all_findings():
            st.findings += 1
            st.errors += f.severity == "error"

    def _aarq(self, rec: ApduRecord, st: AssociationState) -> None:
        if st.aarq_frame is not None and st.keys.dedicated_key is not None:
            rec.findings.append(Finding("note", "assoc.new-aarq",
                                        "new AARQ: the previous association's dedicated key"
                                        " is dropped"))
        st.release()
        st.authenticated = False
        pkt = rec.acse()
        st.keys.client_title = getattr(pkt, "calling_ap_title", None) or st.keys.client_title
        st.mechanism = getattr(pkt, "mechanism_id", None)
        st.context_id = getattr(pkt, "application_context_id", None)
        st.ctos = getattr(pkt, "authentication_value", None)
        st.aarq_frame = rec.frames[0] if rec.frames else None
        inner = _initiate(rec)
        key = getattr(inner, "dedicated_key", None) if inner is not None else None
        if inner is not None and inner.apdu_name == "initiate-request":
            st.max_pdu["client"] = inner.client_max_receive_pdu_size
        if key:
            st.keys.dedicated_key = SecretKey(bytes(key), name="dedicated")
            st.keys.dedicated_source = f"AARQ frame {st.aarq_frame}"
        ciphered_ctx = st.context_id in (3, 4)
        if st.mechanism == 2 and ciphered_ctx:
            rec.findings.append(Finding(
                "warning", "assoc.mechanism2-ciphered",
                "mechanism 2 (manufacturer HLS) with a ciphered context: the authentication key"
                " plays no part; mechanism 5 (GMAC) uses it"))

    def _aare(self, rec: ApduRecord, st: AssociationState) -> None:
        pkt = rec.acse()
        st.keys.server_title = getattr(pkt, "responding_ap_title", None) or st.keys.server_title
        if st.keys.server_title is not None:
            if len(self.server_titles) >= MAX_ADDRESSES:
                self.server_titles.clear()
            self.server_titles[address_of(st.link)] = st.keys.server_title
        st.stoc = getattr(pkt, "authentication_value", None)
        inner = _initiate(rec)
        if inner is not None and inner.apdu_name == "initiate-response" \
                and inner.conformance is not None:
            st.conformance = int(inner.conformance)
            st.max_pdu["server"] = inner.server_max_receive_pdu_size
        result = getattr(pkt, "result", None)
        diag = getattr(pkt, "diagnostic", None)
        if result not in (None, 0):
            reason = f"{diag[0]} {diag[2]}" if diag else "no diagnostic"
            rec.findings.append(Finding("warning", "assoc.rejected",
                                        f"AARE rejects the association ({reason})"))
            st.release()
        elif diag is not None and diag[1] == 14:
            st.hls_pending = True
        elif result == 0:
            st.authenticated = True

    def _hls_request(self, rec: ApduRecord, st: AssociationState) -> None:
        if not st.hls_pending:
            return
        meth = _fact(rec, "method")
        seen = meth is not None
        if seen and meth != (15, 1):
            return
        rec.hls_pass = 3
        if seen:
            self._check_hls(rec, st, 3)
        env = rec.envelope
        if env is not None and getattr(env, "family", "") == "ded":
            how = "" if seen else " (ciphered: taken as pass 3, the first action-request while" \
                " the AARE's authentication-required is pending)"
            rec.findings.append(Finding(
                "warning", "assoc.ded-before-auth",
                "ded-ciphered HLS pass 3 before the association is authenticated: most servers"
                f" expect glo- (global key) until pass 4{how}"))

    def _key_transfer(self, rec: ApduRecord, st: AssociationState, pkt: Packet) -> None:
        """Security setup key_transfer: unwrap the new keys with the KEK, apply on success."""
        param = _first(pkt, "DataArray")
        if param is None:
            return
        data = bytes(param)
        entries = [e for e in st.keys.entries(self.keystore, st.keys.server_title,
                                              st.keys.client_title) if e.kek is not None]
        if not entries:
            rec.findings.append(Finding("note", "keys.transfer-not-followed",
                                        "key_transfer seen, but no KEK in the keystore: the new"
                                        " keys cannot be followed"))
            return
        for entry in entries:
            try:
                keys = unwrap_key_transfer(entry.kek, data)
            except (UnwrapError, KeyTransferFormatError, ValueError):
                continue
            st.new_keys = [(entry, kid, key) for kid, key in keys]
            names = ", ".join(key_id_name(kid) for kid, _ in keys)
            rec.findings.append(Finding("note", "keys.transfer",
                                        f"key_transfer: new {names} unwrapped with"
                                        f" {entry.name}/kek (used once the server accepts)"))
            return
        rec.findings.append(Finding("error", "keys.transfer-unwrap-failed",
                                    "key_transfer: the wrapped keys do not unwrap with any KEK"
                                    " of the keystore"))

    def _apply_keys(self, rec: ApduRecord, st: AssociationState) -> None:
        result = _fact(rec, "result")
        pending, st.new_keys = st.new_keys, []
        if result not in (None, 0):
            rec.findings.append(Finding("warning", "keys.transfer-refused",
                                        "the server refused key_transfer: old keys stay"))
            return
        attr = {0: "ek", 1: "bek", 2: "ak", 3: "kek"}
        frame = rec.frames[0] if rec.frames else 0
        for entry, kid, key in pending:
            if kid in attr:
                current = st.keys.overrides.get(entry.name, entry)
                st.keys.overrides[entry.name] = replace(current, **{attr[kid]: key.renamed(
                    f"{entry.name}/{attr[kid]} (transferred frame {frame})")})
        if len(self.transferred) >= MAX_ADDRESSES:
            self.transferred.clear()
        self.transferred[address_of(st.link)] = dict(st.keys.overrides)
        rec.findings.append(Finding("note", "keys.transfer-applied",
                                    "key_transfer accepted: the new keys are used from the next"
                                    " APDU on"))

    def _hls_response(self, rec: ApduRecord, st: AssociationState) -> None:
        st.hls_pending = False
        result = _fact(rec, "result")
        if result not in (None, 0):
            rec.findings.append(Finding("warning", "assoc.hls-refused",
                                        "the server refused HLS pass 3: the association is not"
                                        " authenticated"))
            return
        rec.hls_pass = 4
        st.authenticated = self._check_hls(rec, st, 4) is not False

    def _check_hls(self, rec: ApduRecord, st: AssociationState,
                   hls_pass: int) -> bool | None:
        """Verify f(StoC) (pass 3) or f(CtoS) (pass 4) with the keystore's secrets."""
        f_value = _fact(rec, "octet_string")
        mech = st.mechanism
        if f_value is None or mech is None or not 2 <= mech <= 7:
            return None
        k = st.keys
        client, server = k.client_title, k.server_title
        if hls_pass == 3:
            challenge, own, me, peer, side = st.stoc, st.ctos, client, server, "client"
        else:
            challenge, own, me, peer, side = st.ctos, st.stoc, server, client, "server"
        if challenge is None:
            return None
        verdict: bool | None = None
        used = ""
        for entry in k.entries(self.keystore, server, client):
            try:
                verdict = verify_hls(mech, f_value, challenge, secret=entry.hls_secret,
                                     ek=entry.ek, ak=entry.ak, system_title=me, peer_title=peer,
                                     own_challenge=own,
                                     public_key=entry.signing_public_key(side))
            except HlsInputError:
                verdict = None
            if verdict is not None:
                used = entry.name
                if verdict:
                    break
        what = "f(StoC)" if hls_pass == 3 else "f(CtoS)"
        name = MECHANISM_NAMES.get(mech, str(mech))
        if verdict is True:
            rec.findings.append(Finding("note", "assoc.hls-verified",
                                        f"HLS pass {hls_pass}: {what} verified ({name},"
                                        f" keys {used})"))
        elif verdict is False:
            rec.findings.append(Finding("error", "assoc.hls-mismatch",
                                        f"HLS pass {hls_pass}: {what} does not match ({name},"
                                        f" keys {used}): wrong secret/key, or the peer computes"
                                        " it differently"))
        return verdict

    def _security(self, rec: ApduRecord, st: AssociationState) -> None:
        sec = rec.security()
        if sec is None:
            return
        kind = sec["key_kind"] or "unknown"
        st.key_use[kind] = st.key_use.get(kind, 0) + 1
        ic = sec["invocation_counter"]
        if ic is None:
            return
        sender = sec["system_title"] or rec.direction
        rng = st.ic_range.setdefault(f"{sender} {rec.direction}", [ic, ic])
        rng[0], rng[1] = min(rng[0], ic), max(rng[1], ic)
        key = (sender, rec.direction, kind)
        k = st.keys
        if k.client_title and k.client_title == k.server_title and not st.shared_title_noted:
            st.shared_title_noted = True
            rec.findings.append(Finding(
                "warning", "security.shared-system-title",
                f"client and server use the same system title {k.client_title.hex().upper()}:"
                " the GCM IV repeats whenever their invocation counters meet"))
        last = st.last_ic.get(key)
        if last is not None and ic <= last[0]:
            rec.findings.append(Finding(
                "warning", "security.ic-not-increasing",
                f"invocation counter {ic} does not increase (frame {last[1]} had {last[0]}):"
                " a replay, or a counter reset"))
        st.last_ic[key] = (ic, rec.frames[0] if rec.frames else 0)

    def _pair(self, rec: ApduRecord, st: AssociationState, meaning: str) -> None:
        base = plain_name(meaning)
        if base in RESPONSE_OF:
            st.pending.append(rec)
            del st.pending[:-MAX_PENDING]
            return
        if base in ERROR_APDUS:
            req = st.pending.pop() if st.pending else None
            if req is not None:
                self._answered(rec, req, error=True)
            return
        if base in RESPONSE_OF.values():
            want = next(k for k, v in RESPONSE_OF.items() if v == base)
            iid = _fact(rec, "invoke_id")
            for i in range(len(st.pending) - 1, -1, -1):
                req = st.pending[i]
                if plain_name(req.meaning()) != want:
                    continue
                if iid is not None and _fact(req, "invoke_id") not in (None, iid):
                    continue
                del st.pending[i]
                self._answered(rec, req, error=False)
                self._downgrade(rec, req)
                return

    def _answered(self, rec: ApduRecord, req: ApduRecord, error: bool) -> None:
        rec.response_time = rec.time - req.time
        rec.request_frame = req.frames[0] if req.frames else None
        if not error:
            return
        text = getattr(effective(rec), "description", None) or rec.apdu
        sec = req.security()
        how = f"{req.apdu}, {sec['key_kind']} key" if sec and sec["key_kind"] else req.apdu
        frame = req.frames[0] if req.frames else "?"
        short = text.rsplit(" / ", 1)[-1] if " / " in text else text
        rec.findings.append(Finding("warning", "assoc.error-response",
                                    f"{short} answers frame {frame} ({how})"))

    def _downgrade(self, rec: ApduRecord, req: ApduRecord) -> None:
        asked, got = req.security(), rec.security()
        if asked is None or not (asked["authenticated"] or asked["encrypted"]):
            return
        if got is None:
            rec.findings.append(Finding("warning", "security.downgrade",
                                        f"ciphered request (frame {req.frames[0]}) answered in"
                                        " clear"))
        elif got["control"] is not None and (
                (asked["authenticated"] and not got["authenticated"])
                or (asked["encrypted"] and not got["encrypted"])):
            rec.findings.append(Finding(
                "warning", "security.downgrade",
                f"response protection SC={got['control']:02X} is weaker than the request's"
                f" SC={asked['control']:02X} (frame {req.frames[0]})"))


def address_of(link: str) -> str:
    """A link without its port numbers: the pair of stations (and HDLC addresses) that every
    connection between the same client and meter shares."""
    return _PORT.sub("", link)


def describe_state(st: AssociationState) -> dict[str, Any]:
    """Per-association statistics for --stats."""
    k = st.keys
    return {
        "link": st.link,
        "mechanism": MECHANISM_NAMES.get(st.mechanism, st.mechanism)
        if st.mechanism is not None else None,
        "client_system_title": k.client_title.hex().upper() if k.client_title else None,
        "server_system_title": k.server_title.hex().upper() if k.server_title else None,
        "authenticated": st.authenticated,
        "negotiated_conformance": conformance_names(st.conformance)
        if st.conformance is not None else None,
        "max_receive_pdu_size": st.max_pdu or None,
        "apdus": dict(sorted(st.counts.items())),
        "keys_used": dict(sorted(st.key_use.items())),
        "invocation_counters": {t: r for t, r in st.ic_range.items()},
        "findings": st.findings,
        "errors": st.errors,
    }
