"""The headline plot of a counterfactual: each arm's paired difference from the baseline, with its
interval (a forest plot), beside the arms' mean curves over time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

from lpm.errors import ConfigError
from lpm.plots.style import (BASELINE_COLOR, arm_palette, format_difference, line_style, new_figure,
                             observable_label, outcome_label, run_title)

if TYPE_CHECKING:  # only for annotations: the result type imports this module's package to draw itself
    from lpm.counterfactual import CounterfactualResult

__all__ = ["draw_forest", "forest_figure", "counterfactual_figure", "curve_of"]

DIFFERENCE_COLUMNS = ("arm", "difference", "lo", "hi")


def draw_forest(ax, differences, *, baseline: str, colors: Mapping[str, str], xlabel: str,
                annotate: bool = True) -> None:
    """Draw one row per arm other than ``baseline``, top to bottom in table order: the difference as a
    dot, its interval as a bar, a dashed line at zero, and the numbers written at the right.

    Args:
        ax: a matplotlib Axes.
        differences: a DataFrame with columns ``arm``, ``difference``, ``lo``, ``hi`` (as
            :meth:`lpm.CounterfactualResult.differences` returns).
        baseline: the arm the differences are taken against (not drawn: it is the zero line).
        colors: ``{arm: colour}``; the tick label of each row is drawn in its arm's colour.
        xlabel: the x axis label.
        annotate: write ``difference [lo, hi]`` beside each row, as the printed table does.

    Raises:
        ConfigError: a column is missing.
    """
    missing = [c for c in DIFFERENCE_COLUMNS if c not in differences.columns]
    if missing:
        raise ConfigError(f"Expected difference columns {list(DIFFERENCE_COLUMNS)} (got {list(differences.columns)})")
    rows = differences[differences.arm != baseline]
    y = np.arange(len(rows))[::-1]
    for position, row in zip(y, rows.itertuples(index=False)):
        color = colors.get(row.arm, BASELINE_COLOR)
        ax.errorbar([row.difference], [position], xerr=[[row.difference - row.lo], [row.hi - row.difference]],
                    fmt="o", color=color, ecolor=color, elinewidth=2.0, capsize=3, ms=5, label=row.arm)
        if annotate:
            ax.annotate(format_difference(row.difference, row.lo, row.hi), xy=(1.02, position),
                        xycoords=("axes fraction", "data"), va="center", ha="left", fontsize=7, color=color)
    ax.axvline(0.0, color=BASELINE_COLOR, lw=1.0, ls="--", zorder=0)
    ax.set_yticks(y, [str(a) for a in rows.arm])
    for label, arm in zip(ax.get_yticklabels(), rows.arm):
        label.set_color(colors.get(arm, BASELINE_COLOR))
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def _difference_label(outcome: str, baseline: str, level: float, seeds: int, paired: bool) -> str:
    how = "paired seeds" if paired else "independent seeds"
    return (f"{outcome_label(outcome)}: arm \u2212 {baseline}\n"
            f"mean over {seeds} {how}, {level:.0%} bootstrap interval")


def forest_figure(differences, *, baseline: str, outcome: str, level: float = 0.9, seeds: int,
                  paired: bool = True, title: str = "", colors: Optional[Mapping[str, str]] = None):
    """A Figure with only the forest plot of ``differences`` (see :func:`draw_forest`).

    Returns:
        a :class:`matplotlib.figure.Figure`.
    """
    arms = list(differences.arm)
    colors = arm_palette(arms, baseline) if colors is None else colors
    rows = max(1, len(arms) - 1)
    fig = new_figure(7.5, 1.4 + 0.32 * rows)
    ax = fig.subplots()
    draw_forest(ax, differences, baseline=baseline, colors=colors,
                xlabel=_difference_label(outcome, baseline, level, seeds, paired))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def curve_of(outcome: str, recorded: Sequence[str]) -> Optional[str]:
    """The recorded series an outcome summarises: ``reshares`` for cascade outcomes, else the longest
    observable name that ends ``outcome`` (``peak_time_negative_share`` -> ``negative_share``)."""
    if "reshares" in recorded:
        return "reshares"
    matches = [name for name in recorded if outcome.endswith(name)]
    return max(matches, key=len) if matches else (recorded[0] if recorded else None)


def counterfactual_figure(result: "CounterfactualResult", outcome: Optional[str] = None, *, scenario: str = "",
                          level: float = 0.9):
    """The headline figure of a counterfactual.

    Left: the paired difference of ``outcome`` (default :attr:`~lpm.CounterfactualResult.headline`,
    the outcome the printed table reports) between each arm and the baseline, with its ``level``
    bootstrap interval: exactly :meth:`~lpm.CounterfactualResult.differences`. Right: the mean over
    seeds of the series the outcome summarises, per arm, against hours. Every arm has its own colour
    (the baseline near-black) in both panels.

    Returns:
        a :class:`matplotlib.figure.Figure`.

    Raises:
        ConfigError: ``outcome`` is not one of the result's outcomes.
    """
    outcome = result.headline if outcome is None else outcome
    differences = result.differences(outcome, level=level)
    colors = arm_palette(result.arms, result.baseline)
    seeds = len(result.seeds)
    fig = new_figure(13.0, max(3.8, 1.6 + 0.32 * (len(result.arms) - 1)))
    left, right = fig.subplots(1, 2, width_ratios=(1.0, 1.1))
    draw_forest(left, differences, baseline=result.baseline, colors=colors,
                xlabel=_difference_label(outcome, result.baseline, level, seeds, result.common_random_numbers))
    base_mean = result.table.loc[result.table.arm == result.baseline, outcome].mean()
    left.set_title(f"paired difference from {result.baseline} ({result.baseline} averages {base_mean:.4g})", fontsize=9)

    trajectory = result.trajectory
    series = curve_of(outcome, list(trajectory.values))
    hours = trajectory.times_h.detach().cpu().numpy()
    if series is not None:
        values = trajectory[series].detach().double().cpu().numpy()
        curve = values[..., 0] if values.ndim == 3 else values.reshape(values.shape[0], values.shape[1])  # item 0
        others = [arm for arm in result.arms if arm != result.baseline]  # the order colours were given in
        for a, arm in enumerate(result.arms):
            mean = curve[:, a * seeds:(a + 1) * seeds].mean(1)
            if arm == result.baseline:  # on top, wider: arms that change nothing would hide it otherwise
                right.plot(hours, mean, color=colors[arm], lw=2.4, alpha=0.8, zorder=3, label=f"{arm} (baseline)")
            else:
                right.plot(hours, mean, color=colors[arm], ls=line_style(others.index(arm)), lw=1.3, label=arm)
        right.set_ylabel(f"{observable_label(series, trajectory.dt)}\nmean over {seeds} seeds")
        right.set_title(f"{series.replace('_', ' ')} over time, per arm", fontsize=9)
        right.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    right.set_xlabel("hours since the start")
    right.grid(alpha=0.3)
    title = run_title(scenario, trajectory.final.num_agents, seeds, float(hours[-1]))
    fig.suptitle(f"{title}; {len(result.arms)} arms"
                 + (", common random numbers" if result.common_random_numbers else ""), fontsize=10)
    return fig
