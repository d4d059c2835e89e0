"""The report's interactive plots (plotly), drawn from a run folder's tables.

The same choices as the PNGs of :mod:`lpm.plots`: the baseline near-black and every other arm its
own colour (:func:`lpm.plots.arm_palette`), emotion components named, hours on the time axis, counts
per step as the tables give them.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from lpm.plots import (BASELINE_COLOR, arm_colors, arm_palette, component_label, curve_of, observable_label,
                       outcome_label, value_text)

__all__ = ["forest_figure", "grid_figure", "grid_colors", "seeds_figure", "curves_figure", "observable_figures",
           "grid_points_of"]

_LAYOUT = dict(template="plotly_white", font=dict(size=12), margin=dict(l=10, r=10, t=80, b=50),
               hoverlabel=dict(namelength=-1))


def _go():
    import plotly.graph_objects as go

    return go


def forest_figure(differences: pd.DataFrame, baseline: str, outcome: str, seeds: int, level: float = 0.9,
                  colors: Optional[Mapping[str, str]] = None):
    """Each arm's paired difference from ``baseline`` with its interval, one row per arm (hover for the
    numbers). ``differences``: columns ``arm``, ``difference``, ``lo``, ``hi``; ``colors``: ``{arm:
    colour}`` (default :func:`lpm.plots.arm_palette`)."""
    go = _go()
    palette = arm_palette(list(differences.arm), baseline) if colors is None else colors
    rows = differences[differences.arm != baseline]
    fig = go.Figure()
    for row in rows.itertuples(index=False):
        fig.add_trace(go.Scatter(
            x=[row.difference], y=[str(row.arm)], mode="markers", name=str(row.arm),
            marker=dict(color=palette[row.arm], size=10),
            error_x=dict(type="data", symmetric=False, array=[row.hi - row.difference],
                         arrayminus=[row.difference - row.lo], color=palette[row.arm], thickness=2.5, width=6),
            customdata=[[row.lo, row.hi]],
            hovertemplate="<b>%{y}</b><br>difference %{x:+.4g}<br>" + f"{level:.0%}"
                          + " interval [%{customdata[0]:+.4g}, %{customdata[1]:+.4g}]<extra></extra>"))
    fig.add_vline(x=0.0, line_dash="dash", line_color=BASELINE_COLOR)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=[str(a) for a in rows.arm])
    fig.update_layout(**_LAYOUT, showlegend=False, height=140 + 30 * max(1, len(rows)),
                      title=f"Each arm minus {baseline}<br><sup>{outcome_label(outcome)}, mean over {seeds} "
                            f"paired seeds, {level:.0%} bootstrap interval</sup>",
                      xaxis_title=f"{outcome_label(outcome)}: arm \u2212 {baseline}")
    return fig


def _plain(value: Any) -> Any:
    """A table cell as the grid value it came from: missing -> None, numpy scalars -> Python numbers."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def grid_points_of(table: pd.DataFrame, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{arm: {key: value}}`` from a sweep table's grid columns, arms in table order (when the table
    does not record its grid: ints of a column with a missing value read back as floats)."""
    first = table.drop_duplicates("arm")
    return {str(row["arm"]): {k: _plain(row[k]) for k in keys} for _, row in first.iterrows()}


def _lines(points: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], dict[str, int]]:
    """The keys after the first, and each arm's line (its combination of their values)."""
    others = list(next(iter(points.values())))[1:]
    combos = list(dict.fromkeys(tuple(value_text(p[k]) for k in others) for p in points.values()))
    return others, {arm: combos.index(tuple(value_text(p[k]) for k in others)) for arm, p in points.items()}


def grid_colors(points: Mapping[str, Mapping[str, Any]], baseline: str) -> dict[str, str]:
    """``{arm: colour}``: the colour of the arm's line in :func:`grid_figure`, the baseline near-black."""
    _, line = _lines(points)
    palette = arm_colors(max(line.values()) + 1)
    colors = {arm: palette[c] for arm, c in line.items()}
    colors[baseline] = BASELINE_COLOR
    return colors


def grid_figure(differences: pd.DataFrame, points: Mapping[str, Mapping[str, Any]], baseline: str, outcome: str,
                level: float = 0.9):
    """The paired differences against the first grid key, one line per combination of the others.

    ``points``: ``{arm: {key: value}}``, keys in grid order."""
    go = _go()
    diff = differences.set_index("arm")
    first = list(next(iter(points.values())))[0]
    others, line = _lines(points)
    xs = list(dict.fromkeys(value_text(p[first]) for p in points.values()))
    raw = {value_text(p[first]): p[first] for p in points.values()}
    numeric = all(isinstance(raw[x], (int, float)) and not isinstance(raw[x], bool) for x in xs)
    position = {x: (float(raw[x]) if numeric else float(i)) for i, x in enumerate(xs)}
    values = np.array(list(position.values()))
    logx = bool(numeric and values.min() > 0 and values.max() / values.min() >= 20)
    count = max(line.values()) + 1
    colors = arm_colors(count)
    fig = go.Figure()
    for c in range(count):
        offset = c - (count - 1) / 2  # lines side by side, not on top of each other
        arms = sorted((a for a in points if line[a] == c), key=lambda a: position[value_text(points[a][first])])
        x = [position[value_text(points[a][first])] for a in arms]
        x = [v * 10 ** (0.015 * offset) for v in x] if logx else [
            v + offset * (0.012 * (np.ptp(values) or 1.0) if numeric else 0.06) for v in x]
        d = diff.loc[arms]
        label = ", ".join(f"{k}={value_text(points[arms[0]][k])}" for k in others) or first
        fig.add_trace(go.Scatter(
            x=x, y=d.difference, mode="lines+markers", name=label, line=dict(color=colors[c]),
            error_y=dict(type="data", symmetric=False, array=d.hi - d.difference, arrayminus=d.difference - d.lo,
                         color=colors[c]),
            text=arms, customdata=np.stack([d.lo, d.hi], axis=1),
            hovertemplate="<b>%{text}</b><br>difference %{y:+.4g}<br>" + f"{level:.0%}"
                          + " interval [%{customdata[0]:+.4g}, %{customdata[1]:+.4g}]<extra></extra>"))
    fig.add_hline(y=0.0, line_dash="dash", line_color=BASELINE_COLOR)
    fig.update_xaxes(type="log" if logx else "linear", tickvals=list(position.values()), ticktext=xs, title=first)
    fig.update_layout(**_LAYOUT, height=460, title=f"The same differences against {first} (baseline: {baseline})",
                      yaxis_title=f"{outcome_label(outcome)}:<br>arm \u2212 baseline", showlegend=bool(others))
    return fig


def seeds_figure(table: pd.DataFrame, outcome: str, baseline: str):
    """The outcome of every (arm, seed), one row per arm: the spread the intervals summarise."""
    go = _go()
    arms = list(dict.fromkeys(table.arm))
    palette = arm_palette(arms, baseline)
    fig = go.Figure()
    for arm in arms:
        part = table[table.arm == arm]
        fig.add_trace(go.Scatter(
            x=part[outcome], y=[str(arm)] * len(part), mode="markers", name=str(arm),
            marker=dict(color=palette[arm], size=8, opacity=0.75, line=dict(width=0.5, color="white")),
            customdata=part.seed, hovertemplate="<b>%{y}</b>, seed %{customdata}<br>%{x:.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=[str(a) for a in arms])
    fig.update_layout(**_LAYOUT, showlegend=False, height=140 + 28 * len(arms),
                      title=f"{outcome_label(outcome)} per seed (each dot one seed; seeds shared across arms)",
                      xaxis_title=outcome_label(outcome))
    return fig


def _base(column: str) -> str:
    return column.split("[", 1)[0]


def curves_figure(observables: pd.DataFrame, table: pd.DataFrame, baseline: str, outcome: str):
    """The mean over seeds of the series the outcome summarises, per arm, against hours; ``None`` when
    the observables cannot be matched to arms (their scenarios are arm-major: ``arm * seeds + seed``)."""
    go = _go()
    columns = [c for c in observables.columns if c not in ("scenario", "step", "time_h", "arm", "seed")]
    name = curve_of(outcome, list(dict.fromkeys(_base(c) for c in columns)))
    if name is None:
        return None
    column = next(c for c in columns if _base(c) == name)  # item 0 / component 0
    arms = list(dict.fromkeys(table.arm))
    frame = observables
    if "arm" not in frame.columns:
        seeds = table.seed.nunique()
        if frame.scenario.nunique() != len(arms) * seeds:
            return None
        frame = frame.assign(arm=[arms[s // seeds] for s in frame.scenario])
    mean = frame.groupby(["arm", "time_h"], sort=False)[column].mean()
    palette = arm_palette(arms, baseline)
    fig = go.Figure()
    for arm in [a for a in arms if a != baseline] + [baseline]:  # the baseline last: on top
        series = mean.loc[arm]
        fig.add_trace(go.Scatter(
            x=series.index, y=series.values, mode="lines", name=f"{arm} (baseline)" if arm == baseline else arm,
            line=dict(color=palette[arm], width=3.5 if arm == baseline else 1.8),
            hovertemplate=f"<b>{_escape(arm)}</b><br>" + "%{x:.3g} h: %{y:.4g}<extra></extra>"))
    fig.update_layout(**_LAYOUT, height=440, title=f"{name.replace('_', ' ')} over time, mean over seeds, per arm",
                      xaxis_title="hours since the start", yaxis_title=observable_label(name, _step(frame)))
    return fig


def _escape(text: str) -> str:
    """Arm names inside a hover template: plotly reads ``%{...}`` there."""
    return str(text).replace("%", "%%").replace("<", "&lt;")


def _step(frame: pd.DataFrame) -> float:
    times = np.unique(frame.time_h.to_numpy())
    return float(times[1] - times[0]) if times.size > 1 else 1.0


def observable_figures(observables: pd.DataFrame, dt_h: Optional[float] = None) -> list:
    """One figure per recorded observable of a plain run, one line per scenario and component."""
    go = _go()
    dt_h = _step(observables) if dt_h is None else float(dt_h)
    columns = [c for c in observables.columns if c not in ("scenario", "step", "time_h", "arm", "seed")]
    figures = []
    for name in dict.fromkeys(_base(c) for c in columns):
        parts = [c for c in columns if _base(c) == name]
        scenarios = sorted(observables.scenario.unique())
        colors = arm_colors(len(parts) * len(scenarios))
        fig = go.Figure()
        for s, scenario in enumerate(scenarios):
            rows = observables[observables.scenario == scenario]
            for k, column in enumerate(parts):
                label = component_label(name, k, len(parts))
                label = f"{label} ({column})" if label != column else label
                if len(scenarios) > 1:
                    label = f"scenario {scenario} {label}"
                fig.add_trace(go.Scatter(x=rows.time_h, y=rows[column], mode="lines", name=label,
                                         line=dict(color=colors[s * len(parts) + k]),
                                         hovertemplate="%{x:.3g} h: %{y:.4g}"))
        fig.update_layout(**_LAYOUT, height=360, title=name.replace("_", " "), xaxis_title="hours since the start",
                          yaxis_title=observable_label(name, dt_h), showlegend=len(parts) * len(scenarios) > 1)
        figures.append(fig)
    return figures
