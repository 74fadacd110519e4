"""Option types of the CLI: durations, sizes, counts and KEY=VALUE pairs, each refusing a bad
value with a message that shows a good one."""

from __future__ import annotations

from typing import Any

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NEVER = {"never", "off", "none", "null"}


class Duration(click.ParamType[float | None]):
    """Seconds from `90`, `90s`, `5m`, `2h`, `7d`; `never` clears the setting."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float | None:
        text = str(value).strip().lower()
        if text in _NEVER:
            return None
        unit = text[-1] if text and text[-1] in _UNITS else "s"
        number = text[:-1] if text and text[-1] in _UNITS else text
        try:
            return float(number) * _UNITS[unit]
        except ValueError:
            self.fail(f"{value!r} is not a duration; use e.g. 90s, 5m, 2h, 7d or never",
                      param, ctx)


class Size(click.ParamType[int | None]):
    """Bytes from `500M`, `20G`, `1T` or a number; `none` clears the limit."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
        if text in _NEVER:
            return None
        unit = text[-1] if text and text[-1] in _SIZES else ""
        try:
            return int(float(text[:-1] if unit else text) * _SIZES[unit])
        except ValueError:
            self.fail(f"{value!r} is not a size; use e.g. 500M, 20G or none", param, ctx)


class Count(click.ParamType[int | None]):
    """A whole number; `none` for no limit."""

    name = "count"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int | None:
        text = str(value).strip().lower()
        if text in _NEVER:
            return None
        if not text.isdigit():
            self.fail(f"{value!r} is not a whole number (or none for no limit)", param, ctx)
        return int(text)


class Pair(click.ParamType[tuple[str, str]]):
    """`KEY=VALUE`, split at the first `sep`; with `alt`, `KEY<alt>VALUE` is taken too when
    there is no `sep` (labels read k:v in filters, so either works for them)."""

    def __init__(self, sep: str = "=", alt: str | None = None) -> None:
        self.sep = sep
        self.alt = alt
        self.name = f"key{sep}value"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        text = str(value)
        sep = self.alt if self.alt and self.sep not in text else self.sep
        key, found, rest = text.partition(sep)
        if not found or not key:
            self.fail(f"{value!r} is not KEY{self.sep}VALUE", param, ctx)
        return key, rest
