"""The report's tables and provenance as HTML fragments (every value escaped)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from lpm.plots import format_difference, outcome_label

__all__ = ["frame_html", "differences_table", "arms_table", "summary_rows_table", "headline_sentence",
           "provenance_html"]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "" if math.isnan(value) else str(value)
        return f"{value:.4g}"
    return str(value)


def frame_html(frame: pd.DataFrame) -> str:
    """A DataFrame as an HTML table: numbers to 4 significant digits, text escaped."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f'<table class="lpm"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _excludes_zero(lo: float, hi: float) -> bool:
    return lo > 0 or hi < 0


def differences_table(differences: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Arm, the difference and its interval as printed, the bare numbers, and whether 0 is outside."""
    rows = []
    for row in differences.itertuples(index=False):
        if row.arm == baseline:
            continue
        rows.append({"arm": row.arm, f"minus {baseline} [interval]": format_difference(row.difference, row.lo, row.hi),
                     "difference": float(row.difference), "lo": float(row.lo), "hi": float(row.hi),
                     "interval excludes 0": "yes" if _excludes_zero(row.lo, row.hi) else "no"})
    return pd.DataFrame(rows)


def arms_table(summary: pd.DataFrame, outcomes: Sequence[str]) -> pd.DataFrame:
    """Per arm, each outcome as ``mean [5%, 95%]`` over seeds (the layout of ``lpm run``'s table)."""
    rows = []
    for row in summary.to_dict(orient="records"):
        out = {"arm": row["arm"]}
        for name in outcomes:
            if name in row:
                out[name] = f"{row[name]:.4g} [{row[name + '_lo']:.4g}, {row[name + '_hi']:.4g}]"
        rows.append(out)
    return pd.DataFrame(rows)


def summary_rows_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``summary.json``'s per-observable rows as they are."""
    return pd.DataFrame(list(rows))


def headline_sentence(differences: pd.DataFrame, baseline: str, outcome: str, level: float = 0.9) -> str:
    """One plain sentence on what the differences say, for a reader who does not read plots."""
    others = differences[differences.arm != baseline]
    if others.empty:
        return f"Only the baseline arm {baseline} was run: there is nothing to compare it with."
    clear = others[[_excludes_zero(lo, hi) for lo, hi in zip(others.lo, others.hi)]]
    text = (f"Against {baseline}, {len(clear)} of {len(others)} arms change {outcome_label(outcome)} with a "
            f"{level:.0%} interval that excludes zero.")
    down, up = clear[clear.difference < 0], clear[clear.difference > 0]
    if len(down):
        best = down.loc[down.difference.idxmin()]
        text += f" Largest decrease: {best.arm}, {format_difference(best.difference, best.lo, best.hi)}."
    if len(up):
        worst = up.loc[up.difference.idxmax()]
        text += f" Largest increase: {worst.arm}, {format_difference(worst.difference, worst.lo, worst.hi)}."
    return text


def _value_html(value: Any) -> str:
    if isinstance(value, dict) and value and all(not isinstance(v, (dict, list)) for v in value.values()):
        return frame_html(pd.DataFrame({"key": list(value), "value": [_cell(v) for v in value.values()]}))
    if isinstance(value, (dict, list)):
        return f"<pre>{html.escape(json.dumps(value, indent=2, sort_keys=False, default=str))}</pre>"
    return html.escape(_cell(value))


def provenance_html(items: Mapping[str, Any], folder: Path) -> str:
    """Every provenance key of ``summary.json`` as a definition list; the outputs with their hashes as
    a table. Keys are shown as they are named, so those a newer lpm adds appear without a change here."""
    if not items:
        return f'<p class="note">{html.escape(str(folder))} has no summary.json: nothing records how it was made.</p>'
    parts = ["<dl>"]
    for key, value in items.items():
        if key == "outputs" and isinstance(value, dict):
            rows = [{"output": name, "file": entry.get("file", ""), "sha256": entry.get("sha256", "")}
                    for name, entry in value.items() if isinstance(entry, dict)]
            body = frame_html(pd.DataFrame(rows)) if rows else _value_html(value)
        else:
            body = _value_html(value)
        parts.append(f"<dt>{html.escape(str(key))}</dt><dd>{body}</dd>")
    parts.append("</dl>")
    return "".join(parts)
