"""What every lpm plot shares: arm colours, component names, units, titles, and saving.

Plots are drawn on :class:`matplotlib.figure.Figure` objects made directly, never through
``pyplot``: no global figure list to leak into, and no backend is chosen or changed (saving a
``Figure`` to PNG or SVG needs none), so a user's interactive session is left as it was.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

from lpm.errors import ConfigError
from lpm.io_atomic import atomic_savefig

__all__ = ["BASELINE_COLOR", "EMOTION_NAMES", "arm_colors", "arm_palette", "line_style", "component_label",
           "observable_label", "outcome_label", "run_title", "format_difference", "new_figure", "save_figure"]

#: The baseline arm is drawn in near-black in every plot, so the other arms get the whole palette.
BASELINE_COLOR = "#222222"
#: Names of the emotion dimensions, in the order of :attr:`lpm.PopulationState.emotion` (see
#: :func:`lpm.observables.negative_share`, which reads dimension 0 as valence).
EMOTION_NAMES = ("valence", "arousal")

# tab10 and tab20 hex values, written out so the palette does not depend on the matplotlib version.
_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
_TAB20_LIGHT = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
                "#dbdb8d", "#9edae5")


def arm_colors(n: int) -> list[str]:
    """``n`` pairwise different colours (hex), never wrapping around a palette.

    Up to 10: tab10; up to 20: tab10 then the light tab20 shades (drawn dashed, see
    :func:`line_style`); beyond: ``n`` evenly spaced hues of the HSV circle at two lightness levels.

    Raises:
        ConfigError: ``n`` is not a non-negative int.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"Expected a non-negative int number of colours (got {n!r})")
    if n <= 10:
        return list(_TAB10[:n])
    if n <= 20:
        return list(_TAB10 + _TAB20_LIGHT[: n - 10])
    import colorsys

    colors = []
    for i in range(n):
        hue = i / n
        light = 0.38 if i % 2 == 0 else 0.58  # neighbours on the circle differ in lightness too
        r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
        colors.append("#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (r, g, b))))
    seen: set[str] = set()
    for i, color in enumerate(colors):  # rounding to 8 bits can merge neighbours past ~1500 hues
        while color in seen:
            color = "#{:06x}".format((int(color[1:], 16) + 1) % 0x1000000)
        colors[i] = color
        seen.add(color)
    return colors


def arm_palette(arms: Sequence[str], baseline: Optional[str] = None) -> dict[str, str]:
    """``{arm: colour}``: the baseline near-black, every other arm its own colour of :func:`arm_colors`."""
    others = [arm for arm in arms if arm != baseline]
    palette = dict(zip(others, arm_colors(len(others))))
    if baseline is not None and baseline in arms:
        palette[baseline] = BASELINE_COLOR
    return {arm: palette[arm] for arm in arms}


def line_style(index: int) -> str:
    """Solid for the first ten arms, then dashed, dotted and dash-dotted per further ten, so arms that
    share a hue family (tab10 and its light tab20 shade) still differ."""
    return ("-", "--", ":", "-.")[(index // 10) % 4]


def component_label(name: str, k: int, components: int) -> str:
    """``"emotion_mean"``, component 0 of 2 -> ``"valence"``; other vectors -> ``"name[k]"``."""
    if components == 1:
        return name
    if name.startswith("emotion") and components <= len(EMOTION_NAMES):
        return EMOTION_NAMES[k]
    return f"{name}[{k}]"


def observable_label(name: str, dt_h: float) -> str:
    """The y label of a recorded observable, in the units of the tables (counts per step, not per hour)."""
    if name == "posts":
        return f"posts per step ({_duration(dt_h)})"
    if name == "emotion_mean":
        return "mean emotion"
    if name == "reshares":
        return "agents who reshared (cumulative)"
    if name == "exposed":
        return "agents reached (cumulative)"
    return name.replace("_", " ")


def _duration(hours: float) -> str:
    return f"{hours * 60:.3g} min" if hours < 1 else f"{hours:.3g} h"


def run_title(scenario: str, agents: int, seeds: Optional[int], hours: float) -> str:
    """``"misinformation: 100,000 agents, 6 seeds, 36 h"`` (a plain name when nothing else is known)."""
    parts = [f"{agents:,} agents"]
    if seeds is not None:
        parts.append(f"{seeds} seed{'s' if seeds != 1 else ''}")
    parts.append(f"{hours:.3g} h")
    return f"{scenario}: {', '.join(parts)}" if scenario else ", ".join(parts)


def format_difference(value: float, lo: float, hi: float) -> str:
    """A difference and its interval as the printed tables show them (``+12.3 [+4.5, +20.1]``)."""
    def num(x: float) -> str:
        if not math.isfinite(x):
            return str(x)
        return f"{x:+.0f}" if abs(x) >= 1000 else f"{x:+.4g}"

    return f"{num(value)} [{num(lo)}, {num(hi)}]"


def new_figure(width: float, height: float, dpi: int = 110):
    """A :class:`matplotlib.figure.Figure` with constrained layout, made without ``pyplot``."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def save_figure(figure, path: str | os.PathLike, *, dpi: Optional[int] = None) -> Path:
    """Write ``figure`` to ``path`` atomically (format from the suffix); returns the path."""
    path = Path(path)
    options = {} if dpi is None else {"dpi": dpi}
    return atomic_savefig(figure, path, **options)


_OUTCOMES = {
    "final_reach": "final reach (agents)",
    "final_reach_adjusted": "final reach, adjusted (agents)",
    "final_reshares": "final reshares (agents)",
    "final_reshares_adjusted": "final reshares, adjusted (agents)",
    "peak_time": "hour of most new reshares (h)",
    "max_depth": "deepest reshare chain (hops)",
}


def outcome_label(outcome: str) -> str:
    """A readable name with units for an outcome column of a counterfactual table.

    Cascade outcomes are named in :data:`_OUTCOMES`; the summaries of a scalar observable ``x``
    (``mean_x``, ``peak_x``, ``peak_time_x``, ``final_x``) read "mean x", "peak x", "hour of peak x (h)"
    and "final x"; anything else is shown as it is.
    """
    if outcome in _OUTCOMES:
        return _OUTCOMES[outcome]
    if outcome.startswith("peak_time_"):
        return f"hour of peak {outcome[len('peak_time_'):].replace('_', ' ')} (h)"
    for prefix in ("mean_", "peak_", "final_"):
        if outcome.startswith(prefix):
            name = outcome[len(prefix):]
            unit = " per step" if name == "posts" else ""  # as recorded, and as the tables show it
            return f"{prefix[:-1]} {name.replace('_', ' ')}{unit}"
    return outcome.replace("_", " ")
