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
    assert main(args + ["--overwrite"]) == 0  # the same folder again: replacing the finished run is asked for
    second = json.loads((tmp_path / "misinformation" / "llm_usage.json").read_text())
    assert second["calls"] == 0 and second["cache_hits"] == first["calls"]
    assert "0 calls" in capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "misinformation" / "arms.parquet").is_file()


def test_archetypes_need_a_scenario_with_contexts(tmp_path, capsys) -> None:
    assert main(["run", "disaster", "--agents", "100", "--steps", "1", "--archetypes", "4", "--out", str(tmp_path),
                 "--quiet"]) == 2
    assert "contexts" in capsys.readouterr().err


@needs_embed
def test_misinformation_runs_against_an_openai_compatible_endpoint(tmp_path, capsys, monkeypatch) -> None:
    """The same run with --backend openai talks to a real HTTP server on loopback (configured the
    way the openai package reads it, from OPENAI_BASE_URL / OPENAI_API_KEY) and counts its tokens."""
    pytest.importorskip("openai")
    from lpm.scenarios.misinformation import CONTEXTS
    from tests.archetypes.fake_openai import FakeOpenAI

    server = FakeOpenAI().start()
    try:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        k = 4
        args = ["run", "misinformation", "--agents", "2000", "--archetypes", str(k), "--steps", "2", "--seeds", "2",
                "--out", str(tmp_path), "--cache", str(tmp_path / "cache.sqlite"), "--backend", "openai",
                "--llm-model", "fake-model", "--quiet"]
        assert main(args) == 0
    finally:
        server.stop()
    usage = json.loads((tmp_path / "misinformation" / "llm_usage.json").read_text())
    assert usage["backend"] == "openai" and 0 < usage["calls"] <= k * len(CONTEXTS)
    assert len(server.requests) == usage["calls"]  # one HTTP request per decision, no retries needed
    assert usage["prompt_tokens"] == server.prompt_tokens > 0 and usage["completion_tokens"] == server.completion_tokens
