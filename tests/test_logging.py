"""The library reports through ``logging`` and ``warnings``; only the command-line modules print."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Modules whose job is to write to the terminal.
PRINTERS = {"lpm/cli.py", "lpm/cli_calibrate.py", "lpm/cli_optimize.py", "lpm/cli_plan.py", "lpm/report/__init__.py", "lpm/bench/cli.py", "lpm/__main__.py", "lpm/bench/__main__.py"}


def _print_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
            or isinstance(node, ast.Name) and node.id == "print" and isinstance(node.ctx, ast.Load)]


def test_the_library_never_prints():
    offenders = {}
    for folder in ("lpm", "kernels", "scenarios"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative not in PRINTERS and _print_calls(path):
                offenders[relative] = _print_calls(path)
    assert offenders == {}, f"print in library modules (use logging.getLogger(__name__)): {offenders}"


def test_a_run_logs_its_progress_and_warns_about_what_it_ignores(caplog):
    from lpm.scenario import run_scenario, with_overrides
    from lpm.scenarios import polarization_polblogs

    import lpm.scenario

    scenario = with_overrides(lpm.scenario.load_scenario("default"), agents=300)
    with caplog.at_level(logging.INFO, logger="lpm"):
        run_scenario(scenario, steps=2, progress=False)
    assert any(r.name == "lpm.scenario" and "follow edges among 300 agents" in r.getMessage() for r in caplog.records)

    if not (polarization_polblogs.data_dir() / "polblogs" / "polblogs.gml").is_file():
        pytest.skip("needs ../shared/data/polblogs")
    fixed = with_overrides(lpm.scenario.load_scenario("polarization_polblogs"), agents=500, seeds=2)
    with pytest.warns(UserWarning, match="1490 agents, not the 500"):
        result = run_scenario(fixed, steps=1, progress=False)
    assert result.scenario.agents == 1490  # the record says what ran
