"""The headline plot of a sweep: the paired difference of every grid point from the baseline arm,
as a forest plot and against the first grid key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

import numpy as np

from lpm.errors import ConfigError
from lpm.plots.arms import _difference_label, draw_forest
from lpm.plots.style import BASELINE_COLOR, arm_colors, new_figure, outcome_label, run_title

if TYPE_CHECKING:
    from lpm.counterfactual import CounterfactualResult

__all__ = ["sweep_figure", "value_text"]


def value_text(value: Any) -> str:
    """A grid value as ``lpm sweep`` prints it (``None`` -> ``none``)."""
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def sweep_figure(result: "CounterfactualResult", points: Mapping[str, Mapping[str, Any]],
                 outcome: Optional[str] = None, *, scenario: str = "", level: float = 0.9):
    """The headline figure of a sweep.

    Left: every arm's paired difference of ``outcome`` (default: the headline the printed sweep
    table reports) from the baseline, with its ``level`` bootstrap interval, exactly
    :meth:`~lpm.CounterfactualResult.differences`. Right: the same numbers against the first grid
    key, one line per combination of the other keys, in the colour its arms have on the left. The x
    axis is numeric when the first key's values are all numbers (logarithmic when they span 20x or
    more), else one evenly spaced position per value.

    Args:
        result: the sweep's counterfactual result.
        points: ``{arm name: {key: value}}`` for every arm, keys in grid order.

    Returns:
        a :class:`matplotlib.figure.Figure`.

    Raises:
        ConfigError: ``points`` do not name the result's arms, or ``outcome`` is unknown.
    """
    outcome = result.headline if outcome is None else outcome
    if set(points) != set(result.arms) or not points:
        raise ConfigError(f"Expected grid points for the arms {list(result.arms)} (got {list(points)})")
    differences = result.differences(outcome, level=level).set_index("arm")
    keys = list(next(iter(points.values())))
    first, others = keys[0], keys[1:]
    xs: dict[str, Any] = {}  # keyed by the printed value: grid values are distinct, their texts too
    combos: dict[tuple[str, ...], tuple] = {}
    cell: dict[tuple[str, tuple[str, ...]], str] = {}
    for arm in result.arms:
        point = points[arm]
        x, combo = point[first], tuple(value_text(point[k]) for k in others)
        xs.setdefault(value_text(x), x)
        combos.setdefault(combo, tuple(point[k] for k in others))
        cell[(value_text(x), combo)] = arm
    palette = arm_colors(len(combos))
    line_of = {combo: c for c, combo in enumerate(combos)}
    colors = {arm: palette[line_of[tuple(value_text(points[arm][k]) for k in others)]] for arm in result.arms}
    colors[result.baseline] = BASELINE_COLOR

    fig = new_figure(13.0, max(4.2, 1.6 + 0.3 * (len(result.arms) - 1)))
    left, right = fig.subplots(1, 2, width_ratios=(1.0, 1.0))
    seeds = len(result.seeds)
    label = _difference_label(outcome, result.baseline, level, seeds, result.common_random_numbers)
    draw_forest(left, differences.reset_index(), baseline=result.baseline, colors=colors, xlabel=label)
    left.set_title(f"every arm against {result.baseline}", fontsize=9)

    numeric = _numeric(xs.values())
    texts = list(xs)
    position = np.array([float(v) for v in xs.values()]) if numeric else np.arange(len(xs), dtype=float)
    logx = bool(numeric and position.min() > 0 and position.max() / position.min() >= 20)
    for c, (combo, values) in enumerate(combos.items()):
        # side by side rather than on top of each other: a small offset per line (a factor on a log axis)
        offset = c - (len(combos) - 1) / 2
        x, mean, lo, hi = [], [], [], []
        for i, text in enumerate(texts):
            arm = cell.get((text, combo))
            if arm is None:
                continue
            row = differences.loc[arm]
            if logx:
                x.append(position[i] * 10 ** (0.015 * offset))
            else:
                x.append(position[i] + offset * (0.012 * (np.ptp(position) or 1.0) if numeric else 0.06))
            mean.append(row.difference)
            lo.append(row.difference - row.lo)
            hi.append(row.hi - row.difference)
        order = np.argsort(x, kind="stable")
        x, mean, lo, hi = (np.asarray(a)[order] for a in (x, mean, lo, hi))
        text = ", ".join(f"{k}={value_text(v)}" for k, v in zip(others, values)) or first
        right.errorbar(x, mean, yerr=[lo, hi], fmt="o-", color=palette[c], ms=4, lw=1.3, capsize=2, label=text)
    right.axhline(0.0, color=BASELINE_COLOR, lw=1.0, ls="--", zorder=0)
    if logx:
        right.set_xscale("log")
    right.set_xticks(position, texts)
    right.minorticks_off()
    right.set_xlabel(first)
    right.set_ylabel(f"{outcome_label(outcome)}:\narm \u2212 baseline")
    right.set_title(f"the same differences against {first} ({level:.0%} intervals)", fontsize=9)
    right.grid(alpha=0.3)
    if others:
        right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    trajectory = result.trajectory
    hours = float(trajectory.times_h[-1])
    title = run_title(scenario, trajectory.final.num_agents, seeds, hours)
    shape = " x ".join(f"{len({value_text(p[k]) for p in points.values()})} {k}" for k in keys)
    fig.suptitle(f"{title}; {len(result.arms)} arms ({shape})", fontsize=10)
    return fig
