"""How the benchmarks write their figures: bytes, seconds and a verdict in words."""

from __future__ import annotations


def human_bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            digits = 2 if count < 10 * size else 0
            return f"{count / size:,.{digits}f} {unit}"
    return f"{count:.0f} B"


def seconds_text(value: float) -> str:
    return f"{value:,.1f} s" if value < 10 else f"{value:,.0f} s"


def verdict_word(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "NOT MEASURED"}[met]
