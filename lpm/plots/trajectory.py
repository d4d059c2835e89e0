"""Plots of a recorded trajectory: one figure per observable, every component and scenario a line."""

from __future__ import annotations

from pathlib import Path

from lpm.plots.style import arm_colors, component_label, line_style, new_figure, observable_label, save_figure
from lpm.simulate import Trajectory

__all__ = ["trajectory_figures", "plot_trajectory"]


def trajectory_figures(trajectory: Trajectory, *, scenario: str = "") -> dict[str, "object"]:
    """``{observable: Figure}``: each recorded observable against hours, one line per scenario and
    component, in the units of the summary table (``lpm run`` prints start, end, min, max and the
    hour of the peak of the same series): counts per step, not per hour.

    Emotion components are named (valence, arousal); other vector observables ``name[k]``.

    Shapes:
        trajectory.values: ``{name: (S, B, ...)}``, flattened to ``(S, B, K)`` components.
    """
    hours = trajectory.times_h.detach().cpu().numpy()
    agents = trajectory.final.num_agents
    figures = {}
    for name, value in trajectory.values.items():
        series = value.detach().double().cpu().reshape(value.size(0), value.size(1), -1).numpy()  # (S, B, K)
        _, batch, comps = series.shape
        colors = arm_colors(batch * comps)
        fig = new_figure(7.5, 3.4)
        ax = fig.subplots()
        for b in range(batch):
            for k in range(comps):
                i = b * comps + k
                named = component_label(name, k, comps)  # the summary table's column in brackets
                part = f"{named} ({name}[{k}])" if named != f"{name}[{k}]" else named
                label = " ".join(p for p in ((f"scenario {b}" if batch > 1 else ""), (part if comps > 1 else "")) if p)
                ax.plot(hours, series[:, b, k], color=colors[i], ls=line_style(i), lw=1.3, label=label or None)
        ax.set_xlabel("hours since the start")
        ax.set_ylabel(observable_label(name, trajectory.dt))
        where = f"{scenario}: " if scenario else ""
        ax.set_title(f"{where}{name.replace('_', ' ')}, {agents:,} agents"
                     + (f", {batch} scenarios" if batch > 1 else ""), fontsize=10)
        ax.grid(alpha=0.3)
        if batch * comps > 1:
            ax.legend(fontsize=7, ncol=min(4, batch * comps))
        figures[name] = fig
    return figures


def plot_trajectory(trajectory: Trajectory, out_dir: str | Path, *, title: str = "") -> list[Path]:
    """Write :func:`trajectory_figures` as ``<out_dir>/<observable>.png`` (atomically); ``title`` is the
    scenario name shown in each title. Returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [save_figure(figure, out_dir / f"{name}.png")
            for name, figure in trajectory_figures(trajectory, scenario=title).items()]
