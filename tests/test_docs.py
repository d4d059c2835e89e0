"""The documentation site builds offline with no warning, and says what it must: every public module
documented, every CLI command listed, every scenario with a model card, every tutorial included.
Also the files that ship with the package: the license the metadata names, the typing marker."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs")
    out = tmp_path_factory.mktemp("site")
    # offline: the build must not need the network (no fonts, no inventories, no remote snippets)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "no_proxy": "*", "https_proxy": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    assert "WARNING" not in log, log[-6000:]
    return out


def page(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text(encoding="utf-8")


def test_api_reference_documents_the_public_modules(site):
    import lpm

    api = page(site, "api/lpm") + page(site, "api/graph")
    for name in ("Graph", "PopulationState", "Traits", "Model", "simulate", "Trajectory", "LPMError", "ConfigError"):
        assert re.search(rf'id="lpm\.(errors\.)?{name}"', api), name
    assert set(lpm.__all__) >= {"Graph", "PopulationState", "Model", "simulate", "counterfactual"}
    for module, names in {"counterfactual": ("counterfactual", "CounterfactualResult.differences"),
                          "interventions": ("FactCheckLabel", "Intervention", "InterventionPlan"),
                          "engine": ("StepContext", "Updates", "DynamicsModule"),
                          "metrics": ("fit_power_law", "structural_virality", "echo_chamber_index")}.items():
        html = page(site, f"api/{module}")
        for name in names:
            assert f'id="lpm.{module}.{name}"' in html, (module, name)
    calibration = page(site, "api/calibration")
    for name in ("fit_cascades.calibrate", "fit_cascades.correct_bias", "common.fit", "common.load_params",
                 "posterior.GaussianPosterior", "fit_sentiment.calibrate", "fit_stance.calibrate"):
        assert f'id="lpm.calibration.{name}"' in calibration, name
    # Sphinx roles in docstrings are rewritten, never printed verbatim
    assert not re.search(r":(class|func|meth|mod|data):`", page(site, "api/counterfactual"))


def test_cli_reference_lists_every_command(site):
    from lpm.cli import build_parser

    html = page(site, "cli")
    commands = re.search(r"\{([a-z,]+)\}", build_parser().format_usage()).group(1).split(",")
    assert len(commands) >= 5
    for command in commands:
        assert f"usage: lpm {command}" in html, command


def test_every_scenario_has_a_model_card(site):
    scenarios = sorted(p.stem for p in (ROOT / "scenarios").glob("*.py") if not p.stem.startswith("_"))
    assert "misinformation" in scenarios
    for name in scenarios:
        card = (ROOT / "docs" / "model_cards" / f"{name}.md").read_text()
        for section in ("**What it represents.**", "## Parameters", "## Do not use it for"):
            assert section in card, (name, section)
        assert f"scenarios/{name}.py" in card
        assert f"model_cards/{name}.md" in (ROOT / "mkdocs.yml").read_text()
        assert "Do not use it for" in page(site, f"model_cards/{name}")


def test_tutorials_and_readme_sections_are_included(site):
    for script in sorted((ROOT / "examples").glob("[0-9][0-9]_*.py")):
        text = html.unescape(re.sub(r"<[^>]+>", "", page(site, f"tutorials/{script.stem}")))  # the code as text
        assert "def main() -> None:" in text and script.read_text().splitlines()[0][3:] in text, script.name
    # the fidelity numbers come from the README at build time
    assert "posterior-predictive" in page(site, "benchmarks").lower()
    assert "Unreleased" in page(site, "changelog")


def test_license_file_matches_the_package_metadata():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the whole license, not a pointer to it


def test_typing_marker_ships_with_the_package():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in meta["tool"]["setuptools"]["package-data"]["lpm"]
    assert (ROOT / "lpm" / "py.typed").is_file()
