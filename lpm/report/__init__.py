"""``lpm report RUN_DIR``: one self-contained HTML page about a run folder, to open and share.

The page holds interactive plots (plotly, with its JavaScript embedded, so it opens without a
network), the tables the command printed, and everything ``summary.json`` records about how the run
was made. It is built from the files alone (``summary.json``, ``arms.parquet``, ``sweep.parquet``,
``observables.parquet``), so it works on any finished run folder, and reads every key defensively:
keys a newer lpm adds appear under provenance as they are.

The headline is the same paired difference against the baseline arm that ``lpm run`` / ``lpm sweep``
print: read from ``summary.json``'s ``differences`` where a run wrote them, else computed again by
:meth:`lpm.CounterfactualResult.differences` from the per-seed table.
"""

from __future__ import annotations

import argparse
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from lpm.errors import ConfigError, DataFormatError
from lpm.io_atomic import atomic_write_text
from lpm.report.figures import (curves_figure, forest_figure, grid_colors, grid_figure, grid_points_of,
                                observable_figures, seeds_figure)
from lpm.report.tables import (arms_table, differences_table, frame_html, headline_sentence, provenance_html,
                               summary_rows_table)

__all__ = ["RunFolder", "Headline", "read_run", "headline", "per_seed_result", "grid_keys", "render_report",
           "write_report", "add_parser"]

#: summary.json keys shown as tables or plots; every other key is provenance.
TABLE_KEYS = ("arms", "differences", "pairing", "parameter_uncertainty", "summary")


@dataclass(frozen=True)
class RunFolder:
    """What a run folder holds, as read from disk.

    Attributes:
        path: the folder.
        summary: ``summary.json`` (``{}`` when the folder has none, as sweep folders may not).
        arms: ``arms.parquet`` of a counterfactual run: one row per (arm, seed).
        sweep: ``sweep.parquet`` of a sweep: one row per (arm, seed), grid keys as columns.
        observables: ``observables.parquet``: one row per (scenario, step).
    """

    path: Path
    summary: dict
    arms: Optional[pd.DataFrame]
    sweep: Optional[pd.DataFrame]
    observables: Optional[pd.DataFrame]

    @property
    def kind(self) -> str:
        """``"sweep"``, ``"counterfactual"`` or ``"run"``."""
        return "sweep" if self.sweep is not None else "counterfactual" if self.arms is not None else "run"

    @property
    def per_seed(self) -> Optional[pd.DataFrame]:
        return self.sweep if self.sweep is not None else self.arms


_FILES = ("summary.json", "arms.parquet", "sweep.parquet", "observables.parquet")


def _resolve(folder: Path) -> Path:
    """The folder itself, or where its ``latest`` link points when runs are kept in timestamped folders."""
    if not folder.is_dir():
        raise ConfigError(f"Expected RUN_DIR to be a run folder (got {str(folder)!r}, "
                          f"{'a file' if folder.exists() else 'which does not exist'})")
    if any((folder / name).is_file() for name in _FILES):
        return folder
    latest = folder / "latest"
    if latest.is_dir() and any((latest / name).is_file() for name in _FILES):
        return latest.resolve()
    raise ConfigError(f"Expected a run folder holding one of {list(_FILES)} (got none in {str(folder)!r})")


def read_run(folder: str | os.PathLike) -> RunFolder:
    """Read a run folder written by ``lpm run`` or ``lpm sweep`` (or its ``latest`` link).

    Raises:
        ConfigError: the folder does not exist or holds no run outputs.
        DataFormatError: ``summary.json`` is not a JSON object, or a table cannot be read.
    """
    path = _resolve(Path(folder))
    summary: dict = {}
    if (path / "summary.json").is_file():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"Expected summary.json to hold JSON (got {exc})") from None
        if not isinstance(summary, dict):
            raise DataFormatError(f"Expected summary.json to hold an object (got {type(summary).__name__})")

    def table(name: str) -> Optional[pd.DataFrame]:
        if not (path / name).is_file():
            return None
        try:
            return pd.read_parquet(path / name)
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise DataFormatError(f"Expected {name} to be a Parquet table (got {type(exc).__name__}: {exc})") from None

    run = RunFolder(path, summary, table("arms.parquet"), table("sweep.parquet"), table("observables.parquet"))
    for frame, name in ((run.arms, "arms.parquet"), (run.sweep, "sweep.parquet")):
        if frame is not None and not {"arm", "seed"} <= set(frame.columns):
            raise DataFormatError(f"Expected columns arm and seed in {name} (got {list(frame.columns)})")
    return run


@dataclass(frozen=True)
class Headline:
    """The paired differences against the baseline, and where they came from."""

    differences: pd.DataFrame  # arm, outcome, difference, lo, hi, width
    baseline: str
    outcome: str
    note: str  # how the numbers were obtained, shown under the plot


def per_seed_result(run: RunFolder, baseline: Optional[str] = None):
    """A :class:`lpm.CounterfactualResult` over the per-seed table (without a trajectory), to reuse its
    statistics, and whether the baseline came from the folder (else: ``baseline``, else the first arm).

    A sweep's table records its baseline, outcomes and pairing in its Parquet metadata
    (:func:`lpm.sweep.write_sweep`); otherwise they are taken from ``summary.json`` when it has them,
    else the baseline is the first arm (as :func:`lpm.counterfactual` chooses by default).
    """
    from lpm.counterfactual import ADJUSTED, OUTCOMES, CounterfactualResult

    table = run.per_seed
    meta = sweep_meta(run)
    arms = tuple(dict.fromkeys(table.arm))
    recorded = meta.get("baseline") or run.summary.get("baseline")
    chosen = recorded or baseline or arms[0]
    if chosen not in arms:
        raise DataFormatError(f"Expected the baseline to be one of the arms {list(arms)} (got {chosen!r})")
    skip = {"arm", "seed", "scenario", *grid_keys(run)}
    outcomes = tuple(meta.get("outcomes") or [c for c in (*OUTCOMES, *ADJUSTED) if c in table.columns]
                     or [c for c in table.columns if c not in skip])
    seeds = tuple(sorted({int(s) for s in table.seed}))
    result = CounterfactualResult(table=table, trajectory=None, arms=arms, seeds=seeds, baseline=chosen,
                                  common_random_numbers=bool(meta.get("common_random_numbers", True)),
                                  outcomes=outcomes)
    return result, recorded is not None


def grid_keys(run: RunFolder) -> list[str]:
    """The grid keys of a sweep: from the table's metadata, else the columns between ``arm`` and ``seed``."""
    if run.sweep is None:
        return []
    for grid in (run.summary.get("grid"), sweep_meta(run).get("grid")):
        if isinstance(grid, dict) and grid:
            return list(grid)
    columns = list(run.sweep.columns)
    return columns[columns.index("arm") + 1:columns.index("seed")] if columns.index("seed") > 1 else []


def sweep_meta(run: RunFolder) -> dict:
    """What :func:`lpm.sweep.write_sweep` records in the sweep table's Parquet metadata (``{}`` if none)."""
    meta = run.sweep.attrs.get("lpm_sweep", {}) if run.sweep is not None else {}
    return meta if isinstance(meta, dict) else {}


def sweep_points(run: RunFolder) -> dict[str, dict[str, Any]]:
    """``{arm: {key: value}}`` of a sweep: from the recorded grid (values as given on the command line),
    else read from the table's grid columns."""
    from lpm.sweep import arm_name, grid_points

    grid = run.summary.get("grid") or sweep_meta(run).get("grid")
    arms = list(dict.fromkeys(run.sweep.arm))
    if isinstance(grid, dict) and grid:
        points = {arm_name(point): point for point in grid_points(grid)}
        if set(points) == set(arms):
            return {arm: points[arm] for arm in arms}
    return grid_points_of(run.sweep, grid_keys(run))


def headline(run: RunFolder) -> Optional[Headline]:
    """The paired differences of the headline outcome against the baseline (``None`` for a plain run)."""
    if run.per_seed is None:
        return None
    recorded = run.summary.get("differences")
    if isinstance(recorded, list) and recorded:
        frame = pd.DataFrame(recorded)
        if {"arm", "difference", "lo", "hi"} <= set(frame.columns):
            outcome = str(frame.outcome.iloc[0]) if "outcome" in frame.columns else "outcome"
            # lpm runs take differences against their first arm unless the folder names another
            baseline = run.summary.get("baseline") or sweep_meta(run).get("baseline") or str(run.per_seed.arm.iloc[0])
            return Headline(frame, baseline, outcome, f"the numbers lpm {run.kind.replace('counterfactual', 'run')} "
                                                      f"printed (summary.json)")
    result, known = per_seed_result(run)
    frame = result.differences()
    note = "computed from the per-seed table with lpm's paired bootstrap, as lpm sweep prints them"
    if not known:
        note += f"; the folder does not record the baseline, so the first arm ({result.baseline}) is taken"
    return Headline(frame, result.baseline, result.headline, note)


def _title(run: RunFolder) -> str:
    s = {**sweep_meta(run), **run.summary}
    scenario = s.get("scenario") or run.path.name
    parts = [f"{s['agents']:,} agents" if isinstance(s.get("agents"), int) else None]
    per_seed = run.per_seed
    if per_seed is not None:
        parts.append(f"{per_seed.arm.nunique()} arms x {per_seed.seed.nunique()} seeds")
    if isinstance(s.get("steps"), int) and isinstance(s.get("dt_h"), (int, float)):
        parts.append(f"{s['steps'] * s['dt_h']:.3g} h")
    return f"lpm {run.kind}: {scenario}" + (f" ({', '.join(p for p in parts if p)})" if any(parts) else "")


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1200px;padding:1.5em;
color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:2em} .note{color:#555;font-size:.9em} .headline{background:#f4f7fb;border-left:4px solid #8aa1bd;
padding:.6em 1em} table{border-collapse:collapse;font-size:.85em;margin:.5em 0} th,td{padding:.25em .7em;
border-bottom:1px solid #e4e4e4;text-align:right} th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.8em} dt{font-weight:600;margin-top:.4em}
dd{margin-left:1.5em}
"""


def render_report(folder: str | os.PathLike) -> str:
    """The report of a run folder as one HTML document (see the module docstring).

    Raises:
        ConfigError: no run folder, or plotly is not installed (``pip install 'lpm[report]'``).
        DataFormatError: unreadable outputs (see :func:`read_run`).
    """
    try:
        import plotly  # noqa: F401  (checked first: the page is nothing without its plots)
    except ImportError:
        raise ConfigError("Expected plotly to be installed for lpm report (got none: pip install 'lpm[report]')") from None
    run = read_run(folder)
    sections: list[str] = []
    figures: list[Any] = []

    def plot(figure) -> str:
        # plotly.js goes inline once, into the first plot: the page needs no network when opened
        figures.append(figure)
        return figure.to_html(full_html=False, include_plotlyjs=len(figures) == 1,
                              config={"displaylogo": False, "responsive": True})

    top = headline(run)
    if top is not None:
        table = run.per_seed
        sections.append(f'<p class="headline">{html.escape(headline_sentence(top.differences, top.baseline, top.outcome))}</p>')
        sections.append("<h2>Headline: each arm against the baseline</h2>")
        seeds = int(table.seed.nunique())
        points = sweep_points(run) if run.kind == "sweep" and grid_keys(run) else None
        colors = grid_colors(points, top.baseline) if points else None  # an arm's colour is its line's
        sections.append(plot(forest_figure(top.differences, top.baseline, top.outcome, seeds, colors=colors)))
        if points:
            sections.append(plot(grid_figure(top.differences, points, top.baseline, top.outcome)))
        sections.append(f'<p class="note">Paired differences (arm minus {html.escape(top.baseline)}, the mean over '
                        f'seeds that share their random numbers) with 90% bootstrap intervals; '
                        f'{html.escape(top.note)}.</p>')
        sections.append(frame_html(differences_table(top.differences, top.baseline)))
        sections.append("<h2>Outcomes per arm and seed</h2>")
        sections.append(plot(seeds_figure(table, top.outcome, top.baseline)))
        result, _ = per_seed_result(run, top.baseline)
        sections.append('<p class="note">Mean [5%, 95%] over seeds of each outcome, per arm.</p>')
        sections.append(frame_html(arms_table(result.summary(), result.outcomes)))
        for key, caption in (("pairing", "How much sharing seeds between arms narrowed each interval (gain), and "
                                         "the most any pairing could (bound)"),
                             ("parameter_uncertainty", "With parameter uncertainty, against the point estimate")):
            if isinstance(run.summary.get(key), list) and run.summary[key]:
                sections.append(f"<h2>{html.escape(caption)}</h2>")
                sections.append(frame_html(pd.DataFrame(run.summary[key])))
        if run.observables is not None:
            curves = curves_figure(run.observables, table, top.baseline, top.outcome)
            if curves is not None:
                sections.append("<h2>Over time</h2>")
                sections.append(plot(curves))
    elif run.observables is not None:
        sections.append("<h2>Recorded observables</h2>")
        dt_h = run.summary.get("dt_h")
        for figure in observable_figures(run.observables, dt_h if isinstance(dt_h, (int, float)) else None):
            sections.append(plot(figure))
    rows = run.summary.get("summary")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) and "observable" in r for r in rows):
        sections.append("<h2>Summary of the recorded series</h2>")
        sections.append(frame_html(summary_rows_table(run.summary["summary"])))
    sections.append("<h2>How this run was made</h2>")
    provenance = {k: v for k, v in run.summary.items() if k not in TABLE_KEYS}
    if sweep_meta(run):
        provenance["sweep.parquet metadata"] = sweep_meta(run)
    sections.append(provenance_html(provenance, run.path))
    title = _title(run)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"note\">Run folder: {html.escape(str(run.path))}</p>"
            + "\n".join(sections) + "</body></html>\n")


def write_report(folder: str | os.PathLike, out: Optional[str | os.PathLike] = None) -> Path:
    """Write :func:`render_report` to ``out`` (default ``<folder>/report.html``) atomically; returns the path."""
    page = render_report(folder)
    path = Path(out) if out is not None else _resolve(Path(folder)) / "report.html"
    atomic_write_text(path, page)
    return path


def _cmd_report(args: argparse.Namespace) -> int:
    path = write_report(args.run_dir, args.out)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB, self-contained: open it in any browser, no network needed)")
    return 0


def add_parser(sub) -> None:
    """``lpm report RUN_DIR [--out FILE]``."""
    report = sub.add_parser("report", help="write one self-contained HTML page (plots, tables, provenance) "
                                           "about a run folder")
    report.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by lpm run or lpm sweep, e.g. "
                                                           "runs/misinformation")
    report.add_argument("--out", default=None, metavar="FILE", help="where to write (default: RUN_DIR/report.html)")
    report.set_defaults(func=_cmd_report)
