"""PNG plots of recorded trajectories (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from lpm.io_atomic import atomic_savefig
from lpm.simulate import Trajectory

__all__ = ["plot_trajectory"]


def plot_trajectory(trajectory: Trajectory, out_dir: str | Path, *, title: str = "") -> list[Path]:
    """One PNG per recorded observable: every component, one line per scenario, against days.

    Returns the written paths (``<out_dir>/<observable>.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    days = trajectory.times_h.numpy() / 24.0
    paths = []
    for name, value in trajectory.values.items():
        series = value.detach().double().cpu().reshape(value.size(0), value.size(1), -1).numpy()  # (S, B, K)
        if name == "posts":  # posts per step -> posts per hour, smoothed over an hour
            series = series / trajectory.dt
        fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
        steps, batch, comps = series.shape
        for b in range(batch):
            for k in range(comps):
                label = (f"scenario {b} " if batch > 1 else "") + (f"[{k}]" if comps > 1 else "")
                ax.plot(days, series[:, b, k], lw=1.2, label=label or None)
        ax.set_xlabel("time (days)")
        ax.set_ylabel("posts per hour" if name == "posts" else name)
        ax.set_title(f"{title}: {name}" if title else name)
        ax.grid(alpha=0.3)
        if batch * comps > 1:
            ax.legend(fontsize=7, ncol=min(4, batch * comps))
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        atomic_savefig(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths
