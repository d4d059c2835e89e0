"""Every tutorial in examples/ runs at its small size in a subprocess, and what it prints makes sense:
the numbers a reader is told to look at are checked against what they must be, not only the exit code."""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NUMBER = r"[+-]?\d+(?:\.\d+)?"

pytestmark = pytest.mark.slow


def run(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    """The tutorial's standard output; its stderr is shown when it fails."""
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--small", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done.stdout


def arm_rows(text: str) -> dict[str, tuple[float, float, float]]:
    """``{arm: (difference, lo, hi)}`` from lines ending in ``+d [+lo, +hi]``."""
    rows = {}
    for line in text.splitlines():
        match = re.match(rf"^(\S+)\s.*?({NUMBER}) \[({NUMBER}), ({NUMBER})\]\s*(?:\S+x)?\s*$", line)
        if match and not line.startswith("largest"):
            rows[match.group(1)] = tuple(float(match.group(i)) for i in (2, 3, 4))
    return rows


def test_tutorials_are_all_tested_and_documented():
    """Each examples/*.py has a test here and a docs page that includes it."""
    scripts = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py"))
    assert len(scripts) == 5
    tested = Path(__file__).read_text()
    for name in scripts:
        assert f'"{name}"' in tested, name
        page = ROOT / "docs" / "tutorials" / name.replace(".py", ".md")
        assert f'--8<-- "examples/{name}"' in page.read_text(), page


def test_first_simulation():
    out = run("01_first_simulation.py")
    start, end = (float(x) for x in re.search(rf"polarization: start ({NUMBER}) end ({NUMBER})", out).groups())
    # E|x_i - x_j| of opinions in [-1, 1] lies in [0, 1]; bounded confidence only pulls agents toward
    # the posts within eps of their own view, so the two camps contract and it falls over the day
    assert 0 < end < start < 1
    per_hour, per_user = (float(x) for x in re.search(rf"posts per hour: ({NUMBER}) \(({NUMBER}) per user\)", out).groups())
    assert per_hour > 0 and per_user == pytest.approx(per_hour / 2_000, abs=1e-4)
    grads = [float(x) for x in re.search(rf"raw_eps ({NUMBER}(?:e-?\d+)?), d/d raw_mu ({NUMBER}(?:e-?\d+)?)", out).groups()]
    assert all(math.isfinite(g) and g != 0 for g in grads)
    assert "24.0000" in out  # the table reaches the end of the simulated day


def test_policy_counterfactual():
    out = run("02_policy_counterfactual.py")
    rows = arm_rows(out)
    assert set(rows) == {"none", "label@1h", "label@6h", "prebunk30", "suspend_top10", "downrank"}
    assert rows["none"] == (0.0, 0.0, 0.0)  # the baseline against itself
    for arm, (difference, lo, hi) in rows.items():
        assert lo <= difference <= hi, arm
    for arm in ("label@1h", "label@6h", "prebunk30", "downrank"):
        assert rows[arm][2] < 0, arm  # the whole 90% interval is a reduction
    assert rows["label@1h"][0] < rows["label@6h"][0]  # an earlier label catches more of the cascade
    best = re.search(r"largest reduction: (\S+)", out).group(1)
    assert best == min((r for r in rows if r != "none"), key=lambda r: rows[r][0])


def test_calibrate_your_cascades_recovers_the_planted_transmissibility():
    out = run("03_calibrate_your_cascades.py")
    planted = float(re.search(rf"planted ({NUMBER})", out).group(1))
    plain = float(re.search(rf"mean-field fit:\s+({NUMBER})", out).group(1))
    fitted = float(re.search(rf"after bias correction:\s+({NUMBER})", out).group(1))
    assert planted == 0.012
    assert fitted == pytest.approx(planted, rel=0.15)  # from a start 67% off
    assert plain != fitted  # the correction round ran
    assert re.search(r"loaded 64 cascades", out)
    assert "transmissibility" in re.search(r"applied to the misinformation scenario's cascade: (.*)", out).group(1)


def test_custom_scenario_and_intervention():
    out = run("04_custom_scenario_and_intervention.py")
    rows = arm_rows(out)
    assert set(rows) == {"none", "prompt@0.5h", "prompt@4h", "label@1h"}
    assert rows["none"] == (0.0, 0.0, 0.0)
    assert rows["prompt@0.5h"][2] < 0 and rows["label@1h"][2] < 0
    assert rows["prompt@0.5h"][0] < rows["prompt@4h"][0] <= 0  # the early prompt meets more of the spread
    strength, start = (float(x) for x in re.search(
        rf"d reshares / d strength = ({NUMBER}) .* d reshares / d start time = ({NUMBER})", out).groups())
    assert strength < 0 and start > 0  # a stronger prompt, or an earlier one, means fewer reshares


def _decision(prompt: str) -> dict:
    """What the stand-in endpoint answers: deterministic per prompt, in the ranges real models give
    (a claim reshared by 0.5-3.5% of those who see it once; the label taken at face value)."""
    digest = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    u = [int(digest[i:i + 4], 16) / 0xFFFF for i in range(0, 16, 4)]
    return {"share_probability": round(0.005 + 0.03 * u[0], 4), "stance_shift": round(0.1 + 0.5 * u[1], 4),
            "emotion_impulse": {"valence": round(-0.5 * u[2], 4), "arousal": round(0.5 * u[3], 4)},
            "reaction": f"not sure about this one ({digest[:6]})"}


def test_llm_archetypes_own_endpoint(tmp_path, monkeypatch):
    """The tutorial talks to an OpenAI-compatible server on loopback, as it would to vLLM or Ollama."""
    pytest.importorskip("openai")
    pytest.importorskip("sentence_transformers")
    from lpm.scenarios.misinformation import CLAIM, CONTEXTS
    from tests.archetypes import fake_openai

    monkeypatch.setattr(fake_openai, "answer_for", _decision)
    server = fake_openai.FakeOpenAI().start()
    try:
        out = run("05_llm_archetypes_own_endpoint.py", "--cache", str(tmp_path / "decisions.sqlite"),
                  env={"OPENAI_BASE_URL": server.base_url, "LPM_LLM_MODEL": "my-served-model"})
    finally:
        server.stop()
    k = 6
    assert len(server.requests) == k * len(CONTEXTS)  # one request per (archetype, context), none per agent
    assert {r.body["model"] for r in server.requests} == {"my-served-model"}
    assert f"first build: {k * len(CONTEXTS)} endpoint calls, 0 cache hits" in out
    assert f"second build: 0 endpoint calls, {k * len(CONTEXTS)} cache hits" in out
    # the printed claim decisions are the endpoint's answers, one per archetype
    served = sorted(_decision(r.user_prompt)["share_probability"] for r in server.requests if CLAIM in r.user_prompt)
    printed = sorted(float(m) for m in re.findall(rf"^\s+\d+\s+\d+\s+({NUMBER})\s+{NUMBER}$", out, re.MULTILINE))
    assert printed == pytest.approx(served, abs=1e-4) and len(printed) == k
    rows = arm_rows(out)
    assert rows["none"] == (0.0, 0.0, 0.0)
    assert rows["label@1h"][2] < 0  # a label that every archetype takes at face value lowers the reach
