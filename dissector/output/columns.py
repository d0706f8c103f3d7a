"""`-T fields -e FIELD ... -E OPTION=VALUE`: chosen fields of each record on one line, as
`tshark -T fields` prints them (header, separator, quoting, occurrences, aggregator)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dissector.output.filter import FilterError, field_values, known_field

_SEPARATORS = {"/t": "\t", "/s": " "}


@dataclass(frozen=True, slots=True)
class Columns:
    """The `-e` fields and the `-E` options."""

    fields: tuple[str, ...]
    header: bool = False
    separator: str = "\t"
    occurrence: str = "a"  # f first, l last, a all
    aggregator: str = ","
    quote: str = ""  # '"' for d, "'" for s

    @classmethod
    def parse(cls, fields: list[str], options: list[str]) -> Columns:
        """From `-e` and `-E` arguments; a `FilterError`-like `ValueError` names a bad one."""
        if not fields:
            raise ValueError("-T fields needs at least one -e FIELD")
        bad = [f for f in fields if not known_field(f)]
        if bad:
            raise FilterError(f"-e: {', '.join(map(repr, bad))} is not a field"
                              " (`dlms-dissect fields` lists them)")
        kw: dict[str, Any] = {}
        for option in options:
            name, sep, value = option.partition("=")
            if not sep:
                raise ValueError(f"-E {option!r}: expected NAME=VALUE")
            if name == "header" and value in ("y", "n"):
                kw["header"] = value == "y"
            elif name == "separator" and value:
                kw["separator"] = _SEPARATORS.get(value, value)
            elif name == "occurrence" and value in ("f", "l", "a"):
                kw["occurrence"] = value
            elif name == "aggregator" and value:
                kw["aggregator"] = _SEPARATORS.get(value, value)
            elif name == "quote" and value in ("d", "s", "n"):
                kw["quote"] = {"d": '"', "s": "'", "n": ""}[value]
            else:
                raise ValueError(f"-E {name}={value!r} is not an option tshark's -E takes"
                                 " (header=y|n, separator=/t|/s|C, occurrence=f|l|a,"
                                 " aggregator=/s|C, quote=d|s|n)")
        return cls(tuple(fields), **kw)

    def header_line(self) -> str:
        return self.separator.join(self.fields) + "\n"

    def cells(self, record: dict[str, Any]) -> list[str | None]:
        """Each field's text; None for `number` (the writer fills it in)."""
        return [None if f == "number" else self._cell(field_values(record, f, names=True))
                for f in self.fields]

    def line(self, cells: list[str | None], number: int) -> str:
        shown = [str(number) if c is None else c for c in cells]
        return self.separator.join(f"{self.quote}{c}{self.quote}" if self.quote else c
                                   for c in shown) + "\n"

    def _cell(self, values: list[Any]) -> str:
        values = [v for v in values if v is not None and not isinstance(v, (dict, list))]
        if values and self.occurrence == "f":
            values = values[:1]
        elif values and self.occurrence == "l":
            values = values[-1:]
        return self.aggregator.join(_text(v) for v in values)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"  # as tshark prints booleans in fields
    return str(value)
