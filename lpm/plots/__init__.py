"""Every plot lpm draws, as :class:`matplotlib.figure.Figure` objects.

Plot functions return Figures and never touch pyplot or the matplotlib backend, so they are safe in
notebooks and GUIs; writing files is the caller's choice (:func:`save_figure` writes one atomically;
``lpm run`` and ``lpm sweep`` write PNGs with it).

* :func:`counterfactual_figure`: the headline of a counterfactual, the paired difference of every
  arm from the baseline with its interval (the numbers of the printed table), beside the arms'
  curves over time; :meth:`lpm.CounterfactualResult.figure` calls it.
* :func:`sweep_figure`: the same for a sweep, also drawn against the first grid key.
* :func:`trajectory_figures`: one figure per recorded observable of a plain run.
* :func:`forest_figure` / :func:`draw_forest`: a forest plot of any table of differences.
"""

from lpm.plots.arms import counterfactual_figure, curve_of, draw_forest, forest_figure
from lpm.plots.grid import sweep_figure, value_text
from lpm.plots.style import (BASELINE_COLOR, EMOTION_NAMES, arm_colors, arm_palette, component_label,
                             format_difference, line_style, observable_label, outcome_label, run_title,
                             save_figure)
from lpm.plots.trajectory import plot_trajectory, trajectory_figures

__all__ = ["counterfactual_figure", "sweep_figure", "trajectory_figures", "plot_trajectory", "forest_figure",
           "draw_forest", "curve_of", "value_text", "save_figure", "arm_colors", "arm_palette", "line_style",
           "component_label", "observable_label", "outcome_label", "run_title", "format_difference",
           "BASELINE_COLOR", "EMOTION_NAMES"]
