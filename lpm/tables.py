"""The tables the command line prints, as :class:`rich.table.Table` objects (rich lays them out).

Numbers keep the units of ``summary.json``: hours for times, counts of agents for reach and reshares.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from rich.table import Table

from lpm.counterfactual import CounterfactualResult
from lpm.sweep import arm_name, format_value, grid_points, outcomes_of

__all__ = ["summary_table", "arms_table", "sweep_table", "frame_table"]


def _num(x: float, sign: bool = False) -> str:
    plus = "+" if sign else ""
    return f"{x:{plus}.0f}" if abs(x) >= 1000 else f"{x:{plus}.4g}"


def _band(mean: float, lo: float, hi: float, sign: bool = False) -> str:
    return f"{_num(mean, sign)} [{_num(lo, sign)}, {_num(hi, sign)}]"


def summary_table(rows: Sequence[Mapping[str, Any]], title: Optional[str] = None) -> Table:
    """Start, end, min, max and time of the max of each observable (:func:`lpm.scenario.summary_rows`)."""
    table = Table(title=title, title_justify="left")
    table.add_column("observable")
    for name in ("start", "end", "min", "max", "peak at (h)"):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(str(row["observable"]), *(f"{row[k]:.4g}" for k in ("start", "end", "min", "max")),
                      f"{row['peak_time_h']:.1f}")
    return table


def _difference_column(result: CounterfactualResult, against: str) -> str:
    return f"{result.headline} vs {against}"


def arms_table(result: CounterfactualResult, columns: int = 3, title: Optional[str] = None) -> Table:
    """Per arm: the first ``columns`` outcomes as mean [5%, 95%] over seeds, and the headline
    outcome's paired difference from the baseline with its 90% bootstrap interval."""
    summary = result.summary().set_index("arm")
    diff = result.differences(result.headline).set_index("arm")
    shown = result.outcomes[:columns]
    table = Table(title=title, title_justify="left")
    table.add_column("arm")
    for name in shown:
        table.add_column(name, justify="right")
    table.add_column(_difference_column(result, result.baseline), justify="right")
    for arm in result.arms:
        row, d = summary.loc[arm], diff.loc[arm]
        table.add_row(arm, *(_band(row[n], row[f"{n}_lo"], row[f"{n}_hi"]) for n in shown),
                      _band(d.difference, d.lo, d.hi, sign=True))
    return table


def sweep_table(result: CounterfactualResult, grid: Mapping[str, Sequence[Any]], columns: int = 3,
                title: Optional[str] = None) -> Table:
    """Per arm of a sweep: its grid values, the first ``columns`` outcomes as mean [5%, 95%] over
    seeds, and the headline outcome's paired difference from the baseline (90% interval)."""
    outcomes = outcomes_of(result)[:columns]
    summary = result.summary().set_index("arm")
    diff = result.differences(result.headline).set_index("arm")
    table = Table(title=title, title_justify="left")
    for key in grid:
        table.add_column(key, justify="right")
    for name in outcomes:
        table.add_column(name, justify="right")
    table.add_column(_difference_column(result, "baseline"), justify="right")
    for point in grid_points(dict(grid)):
        arm = arm_name(point)
        row, d = summary.loc[arm], diff.loc[arm]
        table.add_row(*(format_value(point[k]) for k in grid),
                      *(_band(row[n], row[f"{n}_lo"], row[f"{n}_hi"]) for n in outcomes),
                      _band(d.difference, d.lo, d.hi, sign=True))
    return table


def frame_table(frame, title: Optional[str] = None) -> Table:
    """A pandas DataFrame as a table, numbers to 4 significant digits."""
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        numeric = frame[column].dtype.kind in "fiu"
        table.add_column(str(column), justify="right" if numeric else "left")
    for values in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values))
    return table
