"""A paper's quantitative statements as data, and the table that prints them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    """One checked statement: what the paper (or theory) expects, what the run measured."""

    name: str
    expected: str
    measured: str
    passed: bool
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClaimList(list):
    """A run's claims: a list of :class:`Claim` that shows as a table (text and Jupyter)."""

    COLUMNS = ("name", "expected", "measured", "passed", "source")

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self)

    def __repr__(self) -> str:
        lines = [f"{'PASS' if c.passed else 'FAIL'}  {c.name}\n      expected: {c.expected}"
                 f"\n      measured: {c.measured}  ({c.source})" for c in self]
        head = f"{sum(c.passed for c in self)} of {len(self)} claims pass"
        return "\n".join([head, *lines])

    def _repr_html_(self) -> str:
        import html

        cells = "".join(f"<th>{name}</th>" for name in self.COLUMNS)
        rows = []
        for c in self:
            values = [c.name, c.expected, c.measured, "pass" if c.passed else "FAIL", c.source]
            style = "" if c.passed else ' style="color:#b00;font-weight:bold"'
            rows.append("<tr>" + "".join(
                f"<td{style if i == 3 else ''}>{html.escape(str(v))}</td>"
                for i, v in enumerate(values)) + "</tr>")
        return (f"<p>{sum(c.passed for c in self)} of {len(self)} claims pass</p>"
                f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def fmt(x: float, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def within_relative(name: str, measured: float, expected: float, rel_tol: float,
                    source: str, what: str = "") -> Claim:
    """|measured/expected − 1| <= rel_tol; a non-finite measurement fails."""
    error = abs(measured / expected - 1.0) if math.isfinite(measured) else math.inf
    prefix = f"{what} = " if what else ""
    return Claim(
        name=name,
        expected=f"{prefix}{fmt(expected, 6)}, rel. tol {rel_tol:g}",
        measured=f"{prefix}{fmt(measured, 6)} (rel. error {fmt(error, 2)})",
        passed=bool(error <= rel_tol),
        source=source,
    )


def in_range(name: str, measured: float, lo: float, hi: float, source: str,
             what: str = "") -> Claim:
    """lo <= measured <= hi; a non-finite measurement fails."""
    prefix = f"{what} " if what else ""
    passed = bool(math.isfinite(measured) and lo <= measured <= hi)
    return Claim(name, f"{prefix}in [{fmt(lo)}, {fmt(hi)}]", f"{prefix}= {fmt(measured)}",
                 passed, source)


def is_true(name: str, condition: bool, expected: str, measured: str, source: str) -> Claim:
    return Claim(name, expected, measured, bool(condition), source)


def table(rows: list[tuple[str, Claim]]) -> str:
    """A plain-text claim table: figure id, claim, expected, measured, PASS/FAIL, source."""
    header = ("figure", "claim", "expected", "measured", "ok", "source")
    body = [(fig, c.name, c.expected, c.measured, "PASS" if c.passed else "FAIL", c.source)
            for fig, c in rows]
    caps = (40, 64, 64, 72, 4, 48)
    widths = [min(max(len(str(r[i])) for r in [header, *body]), cap)
              for i, cap in enumerate(caps)]

    def line(cells):
        out = []
        for cell, w in zip(cells, widths, strict=True):
            text = str(cell)
            out.append(text if len(text) <= w else text[: w - 1] + "…")
        return "  ".join(t.ljust(w) for t, w in zip(out, widths, strict=True)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    lines = [line(header), sep, *(line(r) for r in body)]
    n_pass = sum(c.passed for _, c in rows)
    lines.append(f"{n_pass} of {len(rows)} claims pass")
    return "\n".join(lines)
