"""lpm report: one self-contained HTML page per run folder, with the printed headline and provenance."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pandas as pd
import pytest

from lpm.cli import main
from lpm.errors import ConfigError, DataFormatError
from lpm.plots import format_difference
from lpm.report import headline, read_run, render_report, sweep_points, write_report

pytest.importorskip("plotly")


class _Page(HTMLParser):
    """Tags, the URLs a browser would fetch when opening the page, and the text of tables."""

    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}
        self.fetched: list[str] = []
        self.cells: list[str] = []
        self.inline_script = 0
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self._in.append(tag)
        for key, value in attrs:
            if key in ("src", "href", "data", "poster", "srcset") and value and not value.startswith(("#", "data:")):
                self.fetched.append(f"{tag} {key}={value}")
            if key == "style" and value and "url(" in value:
                self.fetched.append(f"{tag} style={value}")

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if self._in and self._in[-1] in ("td", "th", "dt"):
            self.cells.append(data)
        if self._in and self._in[-1] == "script":
            self.inline_script = max(self.inline_script, len(data))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A counterfactual run, a sweep and a plain run made through the command line, tiny."""
    out = tmp_path_factory.mktemp("runs")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arms starting after the short horizon
        assert main(["run", "misinformation", "--agents", "600", "--seeds", "3", "--steps", "12", "--out",
                     str(out / "run"), "--quiet"]) == 0
        assert main(["sweep", "misinformation", "--grid", "label_h=1,none", "--grid", "prebunk_share=0,0.3",
                     "--agents", "500", "--seeds", "3", "--steps", "12", "--out", str(out / "sweep"), "--quiet"]) == 0
        assert main(["run", "default", "--agents", "300", "--steps", "6", "--out", str(out / "plain"), "--quiet"]) == 0
    return {"cf": out / "run" / "misinformation", "sweep": out / "sweep" / "misinformation-sweep",
            "plain": out / "plain" / "default"}


def test_counterfactual_report_is_self_contained_with_tables_and_provenance(runs, capsys):
    folder = runs["cf"]
    capsys.readouterr()
    assert main(["report", str(folder)]) == 0
    assert "report.html" in capsys.readouterr().out
    text = (folder / "report.html").read_text()
    page = _parse(text)
    assert page.fetched == []  # nothing to download when the page opens
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert page.inline_script > 1_000_000  # plotly.js itself is in the page
    assert text.count('class="plotly-graph-div"') == 3  # headline, per seed, over time
    summary = json.loads((folder / "summary.json").read_text())
    for row in summary["differences"]:  # the headline as lpm run printed and recorded it
        if row["arm"] != "none":
            assert format_difference(row["difference"], row["lo"], row["hi"]) in page.cells, row["arm"]
    arms = pd.read_parquet(folder / "arms.parquet")
    assert set(arms.arm) <= set(page.cells) and len(set(arms.arm)) == 11
    for row in summary["arms"]:  # the per-arm table: mean [5%, 95%]
        assert f"{row['final_reach']:.4g} [{row['final_reach_lo']:.4g}, {row['final_reach_hi']:.4g}]" in page.cells
    for key in ("scenario", "agents", "edges", "device", "outputs"):
        assert key in page.cells
    for entry in summary["outputs"].values():
        assert entry["sha256"] in page.cells
    assert "lpm counterfactual: misinformation (600 agents, 11 arms x 3 seeds, 2 h)" in text


def test_sweep_report_recomputes_the_differences(runs, tmp_path):
    folder = runs["sweep"]
    run = read_run(folder)
    assert run.kind == "sweep"
    top = headline(run)
    assert top.baseline == "label_h=none,prebunk_share=0" and top.outcome == "final_reach_adjusted"
    assert "does not record the baseline" not in top.note
    points = sweep_points(run)
    assert points["label_h=none,prebunk_share=0.3"] == {"label_h": None, "prebunk_share": 0.3}
    assert type(points["label_h=1,prebunk_share=0"]["prebunk_share"]) is int  # as given, not read back as 0.0
    out = tmp_path / "sweep.html"
    assert write_report(folder, out) == out
    page = _parse(out.read_text())
    assert page.fetched == [] and out.read_text().count('class="plotly-graph-div"') == 3
    # the differences are those of the sweep itself: run it again (deterministic) and compare
    from lpm.scenario import load_scenario, with_overrides
    from lpm.sweep import parse_grid, run_sweep
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        grid = parse_grid(["label_h=1,none", "prebunk_share=0,0.3"])
        _, result = run_sweep(with_overrides(load_scenario("misinformation"), agents=500), grid, seeds=3, steps=12)
    expected = result.differences()
    pd.testing.assert_frame_equal(top.differences.reset_index(drop=True)[list(expected.columns)], expected,
                                  check_dtype=False)
    for row in expected.itertuples():
        if row.arm != top.baseline:
            assert format_difference(row.difference, row.lo, row.hi) in page.cells


def test_sweep_summary_json_is_preferred(runs, tmp_path):
    """Where a sweep folder has a summary.json with its differences, grid and baseline (as lpm writes
    them with provenance), the report shows those numbers and no other series summary."""
    folder = tmp_path / "with-summary"
    folder.mkdir()
    table = pd.read_parquet(runs["sweep"] / "sweep.parquet")
    table.attrs.clear()
    table.to_parquet(folder / "sweep.parquet", index=False)
    recorded = headline(read_run(runs["sweep"])).differences.copy()
    recorded["difference"] += 1000.0  # marked, so the page can only show them if it read this file
    summary = {"kind": "sweep", "grid": {"label_h": [1, None], "prebunk_share": [0, 0.3]},
               "baseline": "label_h=none,prebunk_share=0", "differences": recorded.to_dict(orient="records"),
               "summary": [{"arm": "x", "final_reach": 1.0}], "provenance": {"lpm": "9.9", "argv": ["lpm", "sweep"]}}
    (folder / "summary.json").write_text(json.dumps(summary))
    run = read_run(folder)
    top = headline(run)
    assert top.baseline == summary["baseline"] and "summary.json" in top.note
    assert sweep_points(run)["label_h=1,prebunk_share=0"] == {"label_h": 1, "prebunk_share": 0}
    text = render_report(folder)
    page = _parse(text)
    row = recorded[recorded.arm == "label_h=1,prebunk_share=0"].iloc[0]
    assert format_difference(row.difference, row.lo, row.hi) in page.cells
    assert "Summary of the recorded series" not in text and "provenance" in page.cells


def test_sweep_report_without_recorded_metadata_says_so(runs, tmp_path):
    """A sweep table without lpm's metadata (an older lpm) still reports, and says which arm it took."""
    folder = tmp_path / "old"
    folder.mkdir()
    table = pd.read_parquet(runs["sweep"] / "sweep.parquet")
    table.attrs.clear()
    table.to_parquet(folder / "sweep.parquet", index=False)
    top = headline(read_run(folder))
    assert top.baseline == table.arm.iloc[0] and "first arm" in top.note
    assert "first arm" in render_report(folder)


def test_plain_run_report_names_emotions(runs):
    text = render_report(runs["plain"])
    page = _parse(text)
    assert page.fetched == [] and text.count('class="plotly-graph-div"') == 6  # one per observable
    assert "valence (emotion_mean[0])" in text and "posts per step (20 min)" in text
    assert "emotion_mean[0]" in page.cells  # summary.json's rows as they are


def test_latest_link_is_followed(runs, tmp_path):
    (tmp_path / "latest").symlink_to(runs["plain"], target_is_directory=True)
    assert read_run(tmp_path).path == runs["plain"].resolve()


def test_bad_folders_are_clear_errors(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "ConfigError" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="Expected a run folder holding one of"):
        read_run(tmp_path)
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(DataFormatError, match="an object"):
        read_run(tmp_path)
    (tmp_path / "summary.json").write_text("{")
    with pytest.raises(DataFormatError, match="JSON"):
        read_run(tmp_path)


def test_without_plotly_the_error_says_what_to_install(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(ConfigError, match=r"lpm\[report\]"):
        render_report(runs["plain"])


def _chromium():
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
                None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (Debian package chromium)")
def test_report_renders_in_headless_chromium(runs, tmp_path):
    """The page renders offline: the plots' JavaScript ran (the arms' colours are on the screenshot)."""
    from matplotlib.image import imread

    report = write_report(runs["cf"], tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,1400", "--virtual-time-budget=15000", f"--screenshot={shot}",
                    report.as_uri()], capture_output=True, timeout=180, check=False)
    pixels = (imread(shot)[..., :3] * 255).round().astype(int)
    colours = {tuple(p) for p in pixels.reshape(-1, 3)[::7]}
    # tab10 orange and green: the second and third arms' dots and bars, drawn only by plotly.js
    for rgb in ((0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)):
        assert any(all(abs(a - b) <= 6 for a, b in zip(rgb, c)) for c in colours), rgb
