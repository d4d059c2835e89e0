"""Plots: Figures that show the printed headline, with every arm told apart, and no global state touched."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from lpm.plots import (BASELINE_COLOR, EMOTION_NAMES, arm_colors, arm_palette, component_label, format_difference,
                       outcome_label, trajectory_figures)
from lpm.scenario import load_scenario, run_scenario, with_overrides
from lpm.sweep import plot_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
GRID = {"label_h": [1, 6, None], "prebunk_share": [0, 0.3]}


@pytest.fixture(scope="module")
def misinformation():
    """The 11 arms of the misinformation scenario, small."""
    scenario = with_overrides(load_scenario("misinformation"), agents=700, seeds=3)
    with pytest.warns(UserWarning):  # late arms start after this short horizon
        return run_scenario(scenario, steps=12, progress=False).counterfactual


@pytest.fixture(scope="module")
def swept():
    scenario = with_overrides(load_scenario("misinformation"), agents=600)
    with pytest.warns(UserWarning):
        _, result = run_sweep(scenario, GRID, seeds=3, steps=12)
    return result


def _rows(ax):
    """(label, difference, lo, hi, colour) of each forest row, top to bottom."""
    rows = []
    for container in ax.containers:
        line, _, (bars,) = container.lines
        (x0, y0), (x1, _) = bars.get_segments()[0]
        rows.append((container.get_label(), float(line.get_xdata()[0]), float(x0), float(x1), to_hex(line.get_color()),
                     float(y0)))
    return sorted(rows, key=lambda r: -r[5])


# ---------------------------------------------------------------------------------------- counterfactual
def test_forest_shows_the_headline_differences(misinformation):
    result = misinformation
    backend = matplotlib.get_backend()
    fig = result.figure(scenario="misinformation")
    assert isinstance(fig, Figure) and matplotlib.get_backend() == backend
    forest, curves = fig.axes[:2]
    table = result.differences()  # what lpm run prints as the headline column
    assert result.headline == "final_reach_adjusted" and set(table.outcome) == {result.headline}
    others = table[table.arm != result.baseline]
    rows = _rows(forest)
    assert [r[0] for r in rows] == list(others.arm) and len(rows) == 10
    np.testing.assert_allclose([r[1] for r in rows], others.difference)
    np.testing.assert_allclose([r[2] for r in rows], others.lo)
    np.testing.assert_allclose([r[3] for r in rows], others.hi)
    assert [t.get_text() for t in forest.get_yticklabels()] == list(others.arm)
    # the numbers are written beside each row as the sweep table prints them
    written = [t.get_text() for t in forest.texts]
    assert written == [format_difference(r.difference, r.lo, r.hi) for r in others.itertuples()]
    assert "arm \u2212 none" in forest.get_xlabel() and "3 paired seeds" in forest.get_xlabel()
    assert "90%" in forest.get_xlabel() and "final reach, adjusted" in forest.get_xlabel()
    title = fig.get_suptitle()
    assert "misinformation" in title and "700 agents" in title and "3 seeds" in title and "11 arms" in title


def test_every_arm_has_its_own_colour_in_both_panels(misinformation):
    result = misinformation
    fig = result.figure()
    forest, curves = fig.axes[:2]
    rows = _rows(forest)
    lines = {line.get_label().replace(" (baseline)", ""): to_hex(line.get_color()) for line in curves.get_lines()}
    assert list(lines) == list(result.arms)  # one curve per arm
    assert len(set(lines.values())) == 11 and lines["none"] == BASELINE_COLOR
    for arm, _, _, _, color, _ in rows:
        assert lines[arm] == color
    for label in forest.get_yticklabels():
        assert to_hex(label.get_color()) == lines[label.get_text()]
    # the curves are the mean over seeds of each arm's recorded reshares, against hours
    seeds = len(result.seeds)
    reshares = result.trajectory["reshares"][..., 0].double().numpy()
    for a, line in enumerate(curves.get_lines()):
        arm = line.get_label().replace(" (baseline)", "")
        k = result.arms.index(arm)
        np.testing.assert_allclose(line.get_ydata(), reshares[:, k * seeds:(k + 1) * seeds].mean(1))
        np.testing.assert_allclose(line.get_xdata(), result.trajectory.times_h.numpy())
    assert curves.get_xlabel() == "hours since the start"


def test_another_outcome_and_level(misinformation):
    fig = misinformation.figure("final_reshares", level=0.5)
    table = misinformation.differences("final_reshares", level=0.5)
    others = table[table.arm != "none"]
    rows = _rows(fig.axes[0])
    np.testing.assert_allclose([r[2] for r in rows], others.lo)
    assert "50%" in fig.axes[0].get_xlabel()
    with pytest.raises(Exception, match="Expected an outcome"):
        misinformation.figure("reach")


def test_plot_writes_png_atomically(misinformation, tmp_path):
    path = misinformation.plot(tmp_path / "arms.png", scenario="misinformation")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".*tmp"))


# ------------------------------------------------------------------------------------------------ sweep
def test_sweep_figure_shows_the_headline_differences(swept):
    result = swept
    fig = plot_sweep(result, GRID, scenario="misinformation")
    forest, lines = fig.axes[:2]
    table = result.differences().set_index("arm")  # what lpm sweep prints as its headline column
    rows = _rows(forest)
    assert [r[0] for r in rows] == [a for a in result.arms if a != result.baseline]
    assert result.baseline == "label_h=none,prebunk_share=0"
    for (arm, d, lo, hi, _, _), text in zip(rows, [t.get_text() for t in forest.texts]):
        np.testing.assert_allclose([d, lo, hi], table.loc[arm, ["difference", "lo", "hi"]].to_numpy(float))
        assert text == format_difference(*table.loc[arm, ["difference", "lo", "hi"]])  # written beside the row
    # right panel: one line per prebunk_share, x = label_h as categories 1, 6, none; y = the differences
    assert [c.get_label() for c in lines.containers] == ["prebunk_share=0", "prebunk_share=0.3"]
    assert [t.get_text() for t in lines.get_xticklabels()] == ["1", "6", "none"]
    for container, share in zip(lines.containers, GRID["prebunk_share"]):
        expected = [table.loc[f"label_h={h if h is not None else 'none'},prebunk_share={share}", "difference"]
                    for h in GRID["label_h"]]
        np.testing.assert_allclose(container.lines[0].get_ydata(), expected)
    # the two lines' colours are those of their arms on the left
    colors = {to_hex(c.lines[0].get_color()) for c in lines.containers}
    assert len(colors) == 2 and {r[4] for r in rows} <= colors | {BASELINE_COLOR}
    assert "600 agents" in fig.get_suptitle() and "3 seeds" in fig.get_suptitle()
    assert "3 label_h x 2 prebunk_share" in fig.get_suptitle()


def test_sweep_figure_numeric_axis_and_bad_points():
    """All-number first keys are placed at their values, on a log axis when they span 20x or more."""
    from lpm.plots import sweep_figure

    scenario = with_overrides(load_scenario("misinformation"), agents=300)
    grid = {"label_h": [1, 2, 24]}
    with pytest.warns(UserWarning):
        _, result = run_sweep(scenario, grid, seeds=2, steps=6, baseline="label_h=24")
    ax = plot_sweep(result, grid).axes[1]
    assert ax.get_xscale() == "log" and not ax.get_legend()  # one key: a single line, no legend
    np.testing.assert_allclose(ax.containers[0].lines[0].get_xdata(), [1, 2, 24])
    assert _rows(plot_sweep(result, grid).axes[0])[0][0] == "label_h=1"  # the baseline is not a row
    with pytest.raises(Exception, match="Expected grid points"):
        sweep_figure(result, {"a": {"label_h": 1}})


# ------------------------------------------------------------------------------------------ trajectories
def test_trajectory_figures_name_components_and_keep_table_units():
    scenario = with_overrides(load_scenario("default"), agents=300)
    result = run_scenario(scenario, steps=6, progress=False)
    figures = trajectory_figures(result.trajectory, scenario="default")
    assert set(figures) == set(result.trajectory.values)
    ax = figures["emotion_mean"].axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["valence (emotion_mean[0])", "arousal (emotion_mean[1])"]
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), result.trajectory["emotion_mean"][:, 0, 1].double())
    posts = figures["posts"].axes[0]
    assert posts.get_ylabel() == "posts per step (20 min)" and posts.get_xlabel() == "hours since the start"
    # posts per step, as the summary table gives them (not per hour)
    np.testing.assert_allclose(posts.get_lines()[0].get_ydata(), result.trajectory["posts"][:, 0].double())
    assert posts.get_lines()[0].get_xdata()[-1] == pytest.approx(6 * scenario.dt)
    assert "default" in posts.get_title() and "300 agents" in posts.get_title()


# ------------------------------------------------------------------------------------------------ style
@pytest.mark.parametrize("n", [1, 9, 10, 11, 12, 19, 20, 21, 40, 300])
def test_arm_colors_never_repeat(n):
    colors = arm_colors(n)
    assert len(colors) == n == len(set(colors)) and BASELINE_COLOR not in colors


def test_arm_palette_keeps_the_baseline_black_and_the_rest_distinct():
    arms = [f"arm{i}" for i in range(15)]
    palette = arm_palette(arms, "arm3")
    assert palette["arm3"] == BASELINE_COLOR and list(palette) == arms
    assert len(set(palette.values())) == 15
    with pytest.raises(Exception, match="non-negative int"):
        arm_colors(-1)


def test_labels():
    assert [component_label("emotion_mean", k, 2) for k in range(2)] == list(EMOTION_NAMES)
    assert component_label("opinion_mean", 1, 3) == "opinion_mean[1]" and component_label("posts", 0, 1) == "posts"
    assert outcome_label("peak_time_negative_share") == "hour of peak negative share (h)"
    assert outcome_label("mean_posts") == "mean posts per step"
    assert format_difference(-1234.4, -1500.2, 3.21) == "-1234 [-1500, +3.21]"


# -------------------------------------------------------------------------------------------- no globals
def test_plotting_never_touches_the_backend_or_pyplot():
    """In a fresh interpreter with a non-default backend chosen by the user, drawing and saving every
    kind of figure leaves that backend and never imports pyplot."""
    code = """
import sys, warnings, matplotlib
matplotlib.use("pdf")
warnings.simplefilter("ignore")
from lpm.scenario import load_scenario, run_scenario, with_overrides
from lpm.plots import trajectory_figures, save_figure
from lpm.sweep import plot_sweep, run_sweep
s = with_overrides(load_scenario("misinformation"), agents=200, seeds=2)
cf = run_scenario(s, steps=3, progress=False).counterfactual
save_figure(cf.figure(), sys.argv[1] + "/a.png")
_, r = run_sweep(s, {"label_h": [1, None]}, seeds=2, steps=3)
save_figure(plot_sweep(r, {"label_h": [1, None]}), sys.argv[1] + "/b.svg")
t = run_scenario(with_overrides(load_scenario("default"), agents=100), steps=2, progress=False).trajectory
trajectory_figures(t)
assert matplotlib.get_backend() == "pdf", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
print("ok")
"""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
        assert (Path(folder) / "b.svg").read_text().lstrip().startswith("<?xml")


def test_no_library_module_chooses_a_backend_or_uses_pyplot():
    """Only command-line modules may choose a backend; the library draws on Figure objects."""
    offenders = []
    for path in [*(ROOT / "lpm").rglob("*.py"), *(ROOT / "calibration").rglob("*.py"), *(ROOT / "scenarios").rglob("*.py")]:
        if path.name.startswith("cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "matplotlib":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} matplotlib.use")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.startswith("matplotlib.pyplot") for n in names) or (
                        isinstance(node, ast.ImportFrom) and node.module == "matplotlib"
                        and any(a.name == "pyplot" for a in node.names)):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} pyplot")
    assert offenders == []
