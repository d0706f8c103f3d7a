"""Keystore: meters and their keys, from a TOML file, command-line flags or `DLMS_KEYS`.

File format (DESIGN.md "Keystore file")::

    [[meter]]
    name = "lab-meter-1"                      # label shown in annotations
    system_title = "474F450000581CF1"         # server system title; omit = any meter
    client_system_title = "4142434445464748"  # optional; omit = any client
    ek = "000102030405060708090A0B0C0D0E0F"   # global unicast encryption key
    ak = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"   # authentication key
    bek = "..."         # global broadcast encryption key
    kek = "..."         # master key (key_transfer, wrapped keys)
    dedicated = "..."   # static dedicated key, when the AARQ is not in the capture
    hls_secret = "..."  # HLS 2/3/4/6 secret

    # suites 1/2 (all optional): private keys as a PEM/DER file path (relative to the
    # keystore file) or a hex scalar (32 bytes P-256, 48 bytes P-384); public keys as a
    # PEM/DER public key or certificate path, or hex x||y (64 / 96 bytes)
    client_signing_key = "client-sign.pem"     # client's ECDSA private key
    server_signing_key = "..."                 # server's ECDSA private key
    client_public_key = "..."                  # client's ECDSA public key (general-signing, HLS 7)
    server_public_key = "..."                  # server's ECDSA public key
    client_agreement_key = "..."               # client's ECDH private key (general-ciphering)
    server_agreement_key = "..."               # server's ECDH private key
    client_agreement_public_key = "..."        # client's ECDH public key (C(0e,2s))
    server_agreement_public_key = "..."        # server's ECDH public key

Keys and titles are hex or ``text:ASCII``. Symmetric keys are 16 bytes (suites 0/1) or 32
bytes (suite 2). Key bytes never appear in any message: errors name the file, the entry and
the field only.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from . import agreement
from .secret import SecretKey, parse_key_material

__all__ = [
    "ENV_VAR", "KEY_KINDS", "Keystore", "KeystoreError", "MeterKeys", "Problem",
    "check_keystore", "default_keystore_path", "keystore_from_flags", "load_keystore",
]

ENV_VAR = "DLMS_KEYS"

#: Symmetric key fields, and the names DESIGN.md's `security.key_kind` uses for some of them.
SYMMETRIC_FIELDS = ("ek", "ak", "bek", "kek", "dedicated")
SECRET_FIELDS = (*SYMMETRIC_FIELDS, "hls_secret")
KEY_KINDS: dict[str, str] = {
    **{f: f for f in SECRET_FIELDS},
    "global-unicast": "ek", "global-broadcast": "bek", "authentication": "ak",
    "master": "kek", "hls": "hls_secret",
}
TITLE_FIELDS = ("system_title", "client_system_title")
PRIVATE_ECC_FIELDS = ("client_signing_key", "server_signing_key",
                      "client_agreement_key", "server_agreement_key")
PUBLIC_ECC_FIELDS = ("client_public_key", "server_public_key",
                     "client_agreement_public_key", "server_agreement_public_key")
KNOWN_FIELDS = ("name", *TITLE_FIELDS, *SECRET_FIELDS, *PRIVATE_ECC_FIELDS, *PUBLIC_ECC_FIELDS)
SYMMETRIC_LENGTHS = (16, 32)
MAX_MEMO = 4096  # derived lookups kept per keystore (title pairs seen)


class KeystoreError(ValueError):
    """A keystore that cannot be used; the message names file, entry and field, never key bytes."""


@dataclass(frozen=True)
class Problem:
    """One finding of `check_keystore`."""

    severity: Literal["error", "warning"]
    message: str
    source: str = ""
    entry: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.source, self.entry, self.field) if p)
        return f"{self.severity}: {where}: {self.message}" if where else \
            f"{self.severity}: {self.message}"


@dataclass(frozen=True)
class MeterKeys:
    """Keys of one meter (or of any meter, when `system_title` is None). Immutable: keys that
    change later (key_transfer) are held by the association that saw them, as a replaced
    entry (`dataclasses.replace`).

    Secret fields accept bytes or `SecretKey`; bytes are wrapped and named ``<name>/<field>``.
    ECC fields hold loaded `cryptography` key objects (see the module docstring for the file
    syntax).
    """

    name: str
    system_title: bytes | None = None
    client_system_title: bytes | None = None
    ek: SecretKey | None = None
    ak: SecretKey | None = None
    bek: SecretKey | None = None
    kek: SecretKey | None = None
    dedicated: SecretKey | None = None
    hls_secret: SecretKey | None = None
    client_signing_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    server_signing_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    client_public_key: ec.EllipticCurvePublicKey | None = field(default=None, repr=False)
    server_public_key: ec.EllipticCurvePublicKey | None = field(default=None, repr=False)
    client_agreement_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    server_agreement_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    client_agreement_public_key: ec.EllipticCurvePublicKey | None = field(default=None,
                                                                          repr=False)
    server_agreement_public_key: ec.EllipticCurvePublicKey | None = field(default=None,
                                                                          repr=False)

    def __post_init__(self) -> None:
        for name in TITLE_FIELDS:
            title = getattr(self, name)
            if title is not None and len(title) != 8:
                raise KeystoreError(f"meter {self.name!r}: {name} must be 8 bytes, "
                                    f"got {len(title)}")
        for name in SECRET_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (bytes, bytearray)):
                object.__setattr__(self, name, SecretKey(value, f"{self.name}/{name}"))
            elif isinstance(value, SecretKey) and value.name == "key":
                object.__setattr__(self, name, value.renamed(f"{self.name}/{name}"))

    def signing_public_key(self, side: Literal["client", "server"]
                           ) -> ec.EllipticCurvePublicKey | None:
        """Public ECDSA key of one side: the public field, else derived from the private one."""
        pub = getattr(self, f"{side}_public_key")
        priv = getattr(self, f"{side}_signing_key")
        return pub if pub is not None else (priv.public_key() if priv is not None else None)

    def agreement_public_key(self, side: Literal["client", "server"]
                             ) -> ec.EllipticCurvePublicKey | None:
        """Public ECDH key of one side: the public field, else derived from the private one."""
        pub = getattr(self, f"{side}_agreement_public_key")
        priv = getattr(self, f"{side}_agreement_key")
        return pub if pub is not None else (priv.public_key() if priv is not None else None)


@dataclass(frozen=True)
class Keystore:
    """Meter entries in file order, plus the warnings found while loading them. Immutable (the
    entries are a tuple of frozen `MeterKeys`), so lookups are memoised on their arguments."""

    entries: tuple[MeterKeys, ...] = ()
    source: str = "<memory>"
    warnings: tuple[Problem, ...] = ()
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[MeterKeys]:
        return iter(self.entries)

    def by_name(self, name: str) -> MeterKeys | None:
        return next((e for e in self.entries if e.name == name), None)

    def for_titles(self, server_title: bytes | None, client_title: bytes | None
                   ) -> list[MeterKeys]:
        """Entries that may hold the keys of this server/client pair, most specific first.

        A title that matches ranks above a wildcard entry (title omitted), which ranks above an
        entry with a title when the queried title is unknown; an entry whose title differs from
        a known queried title is left out. The server title weighs more than the client's.
        """
        return self.derived(("for_titles", server_title, client_title),
                            lambda: self._rank(server_title, client_title))

    def derived(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value derived from the entries, computed once per `key` (the keystore never
        changes, so nothing goes stale; at most `MAX_MEMO` are kept)."""
        memo = self._memo
        found = memo.get(key)
        if found is None:
            if len(memo) >= MAX_MEMO:
                memo.clear()
            found = memo[key] = compute()
        return found

    def _rank(self, server_title: bytes | None, client_title: bytes | None) -> list[MeterKeys]:
        scored: list[tuple[int, int, MeterKeys]] = []
        for i, entry in enumerate(self.entries):
            s = _title_score(entry.system_title, server_title)
            c = _title_score(entry.client_system_title, client_title)
            if s is not None and c is not None:
                scored.append((-(3 * s + c), i, entry))
        return [e for _, _, e in sorted(scored, key=lambda t: (t[0], t[1]))]

    def candidates(self, kind: str) -> list[SecretKey]:
        """Every key of one kind over all entries ("try every key"), each value once.

        `kind` is a field name (``ek``, ``ak``, ``bek``, ``kek``, ``dedicated``,
        ``hls_secret``) or ``global-unicast``/``global-broadcast``/``authentication``/
        ``master``/``hls``.
        """
        attr = KEY_KINDS.get(kind)
        if attr is None:
            raise ValueError(f"unknown key kind {kind!r}; one of {', '.join(KEY_KINDS)}")
        out: list[SecretKey] = []
        seen: set[SecretKey] = set()
        for entry in self.entries:
            key = getattr(entry, attr)
            if key is not None and key not in seen:
                seen.add(key)
                out.append(key)
        return out

    def merged(self, other: Keystore) -> Keystore:
        """This keystore's entries followed by `other`'s (e.g. flags first, then a file)."""
        return Keystore(self.entries + other.entries, f"{self.source} + {other.source}",
                        self.warnings + other.warnings)


def _title_score(entry_title: bytes | None, query: bytes | None) -> int | None:
    if entry_title is None:
        return 1
    if query is None:
        return 0
    return 2 if bytes(entry_title) == bytes(query) else None


# --- parsing -------------------------------------------------------------------------------

class _Collector:
    """Problems found while parsing one source."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, severity: Literal["error", "warning"], message: str,
            entry: str | None = None, field_name: str | None = None) -> None:
        self.problems.append(Problem(severity, message, self.source, entry, field_name))

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _entry_label(index: int, name: object) -> str:
    return f"meter #{index} ({name!r})" if isinstance(name, str) else f"meter #{index}"


def _parse_value(raw: Any, fname: str, label: str, out: _Collector,
                 base_dir: Path | None) -> Any:
    """Convert one field's value; returns None (after recording a problem) when it is bad."""
    if fname in PRIVATE_ECC_FIELDS or fname in PUBLIC_ECC_FIELDS:
        if not isinstance(raw, str):
            out.add("error", "must be a string (file path or hex)", label, fname)
            return None
        loader = agreement.load_private_key if fname in PRIVATE_ECC_FIELDS else \
            agreement.load_public_key
        try:
            return loader(raw, base_dir=base_dir)
        except agreement.KeyLoadError as exc:
            out.add("error", str(exc), label, fname)
            return None
    if not isinstance(raw, str):
        out.add("error", f"must be a string (hex or text:...), got {type(raw).__name__}",
                label, fname)
        return None
    try:
        value = parse_key_material(raw)
    except ValueError as exc:
        out.add("error", str(exc), label, fname)
        return None
    if fname in TITLE_FIELDS:
        if len(value) != 8:
            out.add("error", f"system title must be 8 bytes, got {len(value)}", label, fname)
            return None
        return value
    if fname in SYMMETRIC_FIELDS and len(value) not in SYMMETRIC_LENGTHS:
        out.add("error", f"key must be 16 bytes (suites 0/1) or 32 bytes (suite 2), "
                         f"got {len(value)}", label, fname)
        return None
    return value


def _parse_entry(raw: dict[str, Any], index: int, out: _Collector,
                 base_dir: Path | None) -> MeterKeys | None:
    name = raw.get("name", f"meter{index}")
    label = _entry_label(index, name)
    if not isinstance(name, str) or not name.strip():
        out.add("error", "name must be a non-empty string", label, "name")
        name = f"meter{index}"
    values: dict[str, Any] = {}
    ok = True
    for fname, value in raw.items():
        if fname == "name":
            continue
        if fname not in KNOWN_FIELDS:
            out.add("error", f"unknown key {fname!r} (known: {', '.join(KNOWN_FIELDS)})",
                    label)
            ok = False
            continue
        parsed = _parse_value(value, fname, label, out, base_dir)
        if parsed is None:
            ok = False
        else:
            values[fname] = SecretKey(parsed, f"{name}/{fname}") if fname in SECRET_FIELDS \
                else parsed
    return MeterKeys(name=name, **values) if ok else None


def _check_duplicates(entries: list[MeterKeys], out: _Collector) -> None:
    names: dict[str, int] = {}
    titles: dict[tuple[bytes, bytes | None], str] = {}
    for i, entry in enumerate(entries, 1):
        if entry.name in names:
            out.add("error", f"duplicate name (also meter #{names[entry.name]})",
                    _entry_label(i, entry.name), "name")
        names.setdefault(entry.name, i)
        if entry.system_title is None:
            continue
        pair = (entry.system_title, entry.client_system_title)
        if pair in titles:
            out.add("warning", f"same system_title {entry.system_title.hex().upper()}"
                               f"{' and client_system_title' if pair[1] else ''} as "
                               f"{titles[pair]}: both are tried", _entry_label(i, entry.name),
                    "system_title")
        titles.setdefault(pair, repr(entry.name))


def _parse_document(doc: dict[str, Any], out: _Collector,
                    base_dir: Path | None) -> list[MeterKeys]:
    for key in doc:
        if key != "meter":
            out.add("error", f"unknown top-level key {key!r} (entries are [[meter]] tables)")
    meters = doc.get("meter", [])
    if not isinstance(meters, list) or not all(isinstance(m, dict) for m in meters):
        out.add("error", "'meter' must be an array of tables ([[meter]])")
        return []
    if not meters and not out.errors():
        out.add("warning", "no [[meter]] entries")
    parsed = [_parse_entry(m, i, out, base_dir) for i, m in enumerate(meters, 1)]
    entries = [e for e in parsed if e is not None]
    if len(entries) == len(parsed):
        _check_duplicates(entries, out)
    return entries


def _permission_problem(path: Path, out: _Collector) -> None:
    if os.name != "posix":
        return
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o044:
        out.add("warning", f"file is readable by group/others (mode {mode:04o}); "
                           f"run: chmod 600 {path}")
    if mode & 0o022:
        out.add("warning", f"file is writable by group/others (mode {mode:04o}): they can "
                           f"change the keys it holds; run: chmod go-w {path}")


def _read(path: Path, out: _Collector) -> list[MeterKeys]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        out.add("error", f"cannot read: {exc.strerror}")
        return []
    except UnicodeDecodeError:
        out.add("error", "not UTF-8 text")
        return []
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        out.add("error", f"TOML syntax error: {exc}")
        return []
    _permission_problem(path, out)
    return _parse_document(doc, out, path.parent)


def load_keystore(path: str | os.PathLike[str]) -> Keystore:
    """Read a TOML keystore; raises `KeystoreError` listing every error. Warnings (file mode,
    duplicate titles) are kept in `Keystore.warnings`."""
    p = Path(path)
    out = _Collector(source_label(path))
    entries = _read(p, out)
    if out.errors():
        raise KeystoreError("\n".join(str(e) for e in out.errors()))
    return Keystore(entries, str(p), [w for w in out.problems if w.severity == "warning"])


def check_keystore(path: str | os.PathLike[str]) -> list[Problem]:
    """Every problem of a keystore file: errors (it would not load) and warnings."""
    out = _Collector(source_label(path))
    _read(Path(path), out)
    return out.problems


_KEY_LIKE = re.compile(r"(?:0x)?[0-9A-Fa-f]{2}(?:[\s:]?[0-9A-Fa-f]{2}){7,}|text:.*", re.S)


def source_label(path: str | os.PathLike[str]) -> str:
    """How messages name a keystore file: its path, unless the path looks like a key (a key
    typed where a file name was expected), which is never repeated."""
    name = os.fspath(path)
    if _KEY_LIKE.fullmatch(name.strip()):
        return "the keystore file given (its name looks like a key: not repeated here)"
    return name


def keystore_from_flags(*, ek: str | None = None, ak: str | None = None, bek: str | None = None,
                        kek: str | None = None, dk: str | None = None,
                        hls_secret: str | None = None, client_title: str | None = None,
                        server_title: str | None = None, name: str = "cli") -> Keystore:
    """A one-entry keystore from `--ek --ak --bek --kek --dk --hls-secret --client-title
    --server-title` (hex or text:...); empty when no flag is given."""
    flags = {"ek": ("ek", ek), "ak": ("ak", ak), "bek": ("bek", bek), "kek": ("kek", kek),
             "dedicated": ("dk", dk), "hls_secret": ("hls-secret", hls_secret),
             "client_system_title": ("client-title", client_title),
             "system_title": ("server-title", server_title)}
    out = _Collector("command line")
    values: dict[str, Any] = {}
    for fname, (flag, raw) in flags.items():
        if raw is None:
            continue
        before = len(out.problems)
        parsed = _parse_value(raw, fname, "", out, None)
        if parsed is None:
            bad = out.problems[before]
            out.problems[before] = Problem("error", bad.message, "command line", None,
                                           f"--{flag}")
            continue
        values[fname] = SecretKey(parsed, f"{name}/{fname}") if fname in SECRET_FIELDS \
            else parsed
    if out.errors():
        raise KeystoreError("\n".join(str(e) for e in out.errors()))
    if not values:
        return Keystore([], "command line")
    return Keystore([MeterKeys(name=name, **values)], "command line")


def default_keystore_path() -> Path | None:
    """The keystore `DLMS_KEYS` names, or None when the variable is unset or empty."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None
