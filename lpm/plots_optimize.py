"""Figures of a policy optimisation (:func:`lpm.optimize.optimize`): convergence, the validated
paired effects, and whom a learned targeting policy selects. Each returns a matplotlib ``Figure``
and leaves the global backend alone."""

from __future__ import annotations

from typing import Sequence

__all__ = ["convergence_figure", "effects_figure", "targeting_figure"]


def convergence_figure(plan):
    """The smooth objective per gradient iteration, with the best grid and TPE scores as lines."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.4), constrained_layout=True)
    ax = figure.subplots()
    seconds = [row["seconds"] for row in plan.trace]
    ax.plot(seconds, [row["objective"] for row in plan.trace], "o-", ms=3, label="gradient (Adam)")
    if plan.tpe:
        best, running = [], float("inf")
        for row in plan.tpe:
            running = min(running, row["score"])
            best.append(running)
        ax.plot([row["seconds"] for row in plan.tpe], best, "s-", ms=3, label="TPE, best so far")
    if plan.grid:
        ax.axhline(min(row["score"] for row in plan.grid), color="k", ls="--", lw=1, label="best grid plan")
    ax.set_xlabel("wall time of the search (s)")
    ax.set_ylabel(f"{plan.objective} (mean field, agents)")
    ax.set_title(f"Optimising {plan.objective}: {len(plan.trace)} gradient steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def effects_figure(plan, level: float = 0.9):
    """Forest plot of the exact validation: each plan's paired difference against doing nothing,
    and the optimised plan's against the grid and TPE plans, with ``level`` intervals."""
    from matplotlib.figure import Figure

    rows = plan.comparison.to_dict(orient="records")
    figure = Figure(figsize=(7, 0.5 * len(rows) + 1.4), constrained_layout=True)
    ax = figure.subplots()
    for y, row in enumerate(rows):
        colour = "C3" if row["hi"] < 0 else ("C0" if row["lo"] > 0 else "0.4")
        ax.errorbar(row["difference"], y, xerr=[[row["difference"] - row["lo"]], [row["hi"] - row["difference"]]],
                    fmt="o", color=colour, capsize=3)
    ax.set_yticks(range(len(rows)), [f"{r['arm']} - {r['against']}" for r in rows])
    ax.axvline(0.0, color="k", lw=0.8)
    ax.invert_yaxis()
    seeds = len(plan.validation.seeds) if plan.validation is not None else 0
    outcome = rows[0]["outcome"] if rows else plan.objective
    outcome = plan.objective if outcome == "objective" else outcome
    ax.set_xlabel(f"paired difference in {outcome} ({level:.0%} interval)")
    ax.set_title(f"Exact dynamics, hard plans, {seeds} fresh seeds", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return figure


def targeting_figure(rows: Sequence[dict]):
    """Share of each follower-count decile that the learned prebunking policy selects."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 3.2), constrained_layout=True)
    ax = figure.subplots()
    ax.bar([r["decile"] for r in rows], [r["share_selected"] for r in rows], color="C2")
    ax.set_xticks([r["decile"] for r in rows],
                  [f"{r['decile']}\n{r['followers_min']:.0f}-{r['followers_max']:.0f}" for r in rows], fontsize=7)
    ax.set_xlabel("follower-count decile (followers)")
    ax.set_ylabel("share prebunked")
    ax.set_ylim(0, 1)
    ax.set_title("Whom the learned policy prebunks")
    ax.grid(axis="y", alpha=0.3)
    return figure
