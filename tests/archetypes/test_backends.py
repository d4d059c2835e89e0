"""Backends against real servers and models: an HTTP chat-completions server on loopback, and tiny
transformers models built here from a config (no download)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lpm.archetypes.backends import OpenAICompatibleBackend, TransformersBackend, make_backend
from lpm.archetypes.decision import Backend, Decision, Usage, parse_decision
from lpm.archetypes.prompts import SYSTEM_PROMPT, render_messages, render_user_prompt, request_digest
from lpm.errors import BackendError, ConfigError
from tests.archetypes.fake_openai import Behaviour, FakeOpenAI, answer_for

REQUESTS = [(f"Persona {i}: a {20 + 3 * i}-year-old who {'shares' if i % 2 else 'lurks'}.",
             f"Post {i % 3}: the bridge is {'closed' if i % 2 else 'open'}.") for i in range(10)]


@pytest.fixture
def fake() -> FakeOpenAI:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def backend_for(fake: FakeOpenAI, **kwargs) -> OpenAICompatibleBackend:
    options = {"model": "fake-model", "base_url": fake.base_url, "api_key": "test", "backoff_s": 0.01,
               "timeout_s": 5.0, **kwargs}
    return OpenAICompatibleBackend(**options)


def expected(persona: str, context: str) -> Decision:
    return parse_decision(answer_for(render_user_prompt(persona, context)))


# -- prompts ---------------------------------------------------------------------------------------------


def test_prompt_names_every_field_with_its_range() -> None:
    messages = render_messages("A retired teacher.", "Vaccines cause X.")
    assert [m["role"] for m in messages] == ["system", "user"]
    for needle in ("share_probability", "[0, 1]", "stance_shift", "[-1, 1]", "valence", "arousal", "reaction"):
        assert needle in SYSTEM_PROMPT
    assert "A retired teacher." in messages[1]["content"] and "Vaccines cause X." in messages[1]["content"]
    assert request_digest("a", "bc") != request_digest("ab", "c")


# -- OpenAI-compatible endpoint --------------------------------------------------------------------------


def test_answers_come_back_in_request_order_with_tokens_counted(fake: FakeOpenAI) -> None:
    # Early requests answer late, so completion order differs from request order.
    fake.script([Behaviour(delay_s=0.15), Behaviour(delay_s=0.1), Behaviour(delay_s=0.05)])
    backend = backend_for(fake, max_concurrency=4)
    assert isinstance(backend, Backend) and backend.name == "openai" and backend.model == "fake-model"
    decisions = backend.decide(REQUESTS)
    assert decisions == [expected(p, c) for p, c in REQUESTS]
    assert len(fake.requests) == len(REQUESTS)
    assert backend.usage == Usage(calls=len(REQUESTS), prompt_tokens=fake.prompt_tokens,
                                  completion_tokens=fake.completion_tokens)
    assert fake.prompt_tokens > 0 and fake.completion_tokens > 0
    body = fake.requests[0].body
    assert body["model"] == "fake-model" and body["temperature"] == 0.0
    assert body["response_format"] == {"type": "json_object"}
    assert backend.decide([]) == []


@pytest.mark.parametrize("json_mode", ["schema", False])
def test_json_mode_sets_the_response_format(fake: FakeOpenAI, json_mode) -> None:
    backend_for(fake, json_mode=json_mode).decide(REQUESTS[:1])
    body = fake.requests[0].body
    if json_mode == "schema":
        assert body["response_format"]["type"] == "json_schema"
        assert set(body["response_format"]["json_schema"]["schema"]["required"]) >= {"share_probability", "reaction"}
    else:
        assert "response_format" not in body


def test_malformed_json_is_asked_again_with_the_problem_named(fake: FakeOpenAI) -> None:
    fake.script([Behaviour("malformed"), Behaviour("ok")])
    backend = backend_for(fake)
    assert backend.decide(REQUESTS[:1]) == [expected(*REQUESTS[0])]
    assert len(fake.requests) == 2 and backend.usage.calls == 2
    retry = fake.requests[1].body["messages"]
    assert [m["role"] for m in retry] == ["system", "user", "assistant", "user"]
    assert "JSON" in retry[-1]["content"]


@pytest.mark.parametrize("kind, problem", [("out_of_range", "'share_probability' in [0.0, 1.0]"),
                                           ("missing_key", "'stance_shift'"),
                                           ("wrong_type", "'share_probability' as a finite number")])
def test_schema_violation_on_every_attempt_raises(fake: FakeOpenAI, kind: str, problem: str) -> None:
    fake.default = Behaviour(kind)
    backend = backend_for(fake, max_retries=2)
    with pytest.raises(BackendError) as info:
        backend.decide(REQUESTS[:1])
    message = str(info.value)
    assert "after 3 attempts" in message and problem in message
    assert request_digest(*REQUESTS[0]) in message
    assert len(fake.requests) == 3 and backend.usage.calls == 3
    assert backend.usage.prompt_tokens == fake.prompt_tokens  # failed attempts are paid for too


def test_timeout_on_every_attempt_raises(fake: FakeOpenAI) -> None:
    fake.default = Behaviour(delay_s=2.0)
    backend = backend_for(fake, timeout_s=0.2, max_retries=1)
    start = time.monotonic()
    with pytest.raises(BackendError, match="after 2 attempts.*APITimeoutError"):
        backend.decide(REQUESTS[:1])
    assert time.monotonic() - start < 1.5
    assert len(fake.requests) == 2


def test_timeout_then_fast_answer_succeeds(fake: FakeOpenAI) -> None:
    fake.script([Behaviour(delay_s=2.0)])
    backend = backend_for(fake, timeout_s=0.2)
    assert backend.decide(REQUESTS[:1]) == [expected(*REQUESTS[0])]
    assert len(fake.requests) == 2


def test_rate_limit_and_server_errors_back_off_exponentially(fake: FakeOpenAI) -> None:
    fake.script([Behaviour("status", status=429), Behaviour("status", status=500), Behaviour("status", status=503)])
    backend = backend_for(fake, backoff_s=0.1)
    assert backend.decide(REQUESTS[:1]) == [expected(*REQUESTS[0])]
    times = [seen.time for seen in fake.requests]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3
    for gap, floor in zip(gaps, (0.1, 0.2, 0.4)):
        assert floor <= gap < floor * 1.1 + 0.5, gaps  # slack: a busy machine
    assert gaps[0] < gaps[1] < gaps[2]


def test_client_errors_are_not_retried(fake: FakeOpenAI) -> None:
    fake.default = Behaviour("status", status=400)
    with pytest.raises(BackendError, match="HTTP 400"):
        backend_for(fake).decide(REQUESTS[:1])
    assert len(fake.requests) == 1


def test_a_failure_stops_the_rest_of_the_batch(fake: FakeOpenAI) -> None:
    fake.script([Behaviour("status", status=401)])
    with pytest.raises(BackendError, match="HTTP 401"):
        backend_for(fake, max_concurrency=1).decide(REQUESTS)
    assert len(fake.requests) <= 2  # the worker may have taken the next request before the cancel


def test_concurrency_bound_is_respected(fake: FakeOpenAI) -> None:
    fake.default = Behaviour(delay_s=0.1)
    decisions = backend_for(fake, max_concurrency=3).decide(REQUESTS)
    assert decisions == [expected(p, c) for p, c in REQUESTS]
    assert fake.max_in_flight == 3


def test_environment_configures_model_and_endpoint(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("LPM_LLM_MODEL", "env-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend = OpenAICompatibleBackend(backoff_s=0.01)  # a local server needs no key
    assert backend.model == "env-model"
    assert backend.decide(REQUESTS[:1]) == [expected(*REQUESTS[0])]
    assert fake.requests[0].body["model"] == "env-model"


def test_missing_configuration_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LPM_LLM_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="model"):
        OpenAICompatibleBackend()
    with pytest.raises(ConfigError, match="API key"):
        OpenAICompatibleBackend("some-model")
    with pytest.raises(ConfigError, match="json_mode"):
        OpenAICompatibleBackend("m", "http://127.0.0.1:9/v1", json_mode="yes")
    with pytest.raises(ConfigError, match="request 0"):
        OpenAICompatibleBackend("m", "http://127.0.0.1:9/v1").decide([("only persona",)])


def test_make_backend() -> None:
    backend = make_backend("openai", model="m", base_url="http://127.0.0.1:9/v1", api_key="k")
    assert isinstance(backend, OpenAICompatibleBackend) and backend.model == "m"
    local = make_backend("transformers", model="/nowhere", batch_size=2)
    assert isinstance(local, TransformersBackend) and local.batch_size == 2  # nothing loaded yet
    with pytest.raises(ConfigError, match="model"):
        make_backend("transformers")
    with pytest.raises(ConfigError, match="'openai', 'transformers', 'embedding'.*'gpt'"):
        make_backend("gpt")


def test_make_backend_embedding() -> None:
    module = pytest.importorskip("lpm.archetypes.embedding_backend")
    assert isinstance(make_backend("embedding"), module.EmbeddingBackend)


# -- local transformers model ----------------------------------------------------------------------------

#: The answer of the crafted model: each word is one token, and no token repeats, so a bigram model can say it.
ANSWER_TOKENS = ['{"share_probability":', '0.25,', '"stance_shift":', '-0.5,', '"emotion_impulse":', '{"valence":',
                 '0.1,', '"arousal":', '0.75},', '"reaction":', '"fine"}']
SPECIAL = ["<pad>", "<unk>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>"]


def _save_tiny_model(folder: Path, crafted: bool) -> Path:
    """A one-layer GPT-2 and a word-level tokenizer with a chat template, saved like a hub model.

    ``crafted``: attention and MLP outputs are zeroed and position embeddings too, so the next token
    depends only on the current one; the weights make "<|assistant|>" start :data:`ANSWER_TOKENS`,
    each answer token lead to the next, the last to "<eos>", and everything else (padding included)
    to "blah". A batch that is padded on the wrong side therefore answers "blah ...".
    Otherwise the weights are random: the model answers garbage.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = SPECIAL + ["blah"] + ANSWER_TOKENS
    vocab = {word: i for i, word in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                        additional_special_tokens=SPECIAL[3:])
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    size = len(words)
    config = GPT2Config(vocab_size=size, n_positions=1024, n_embd=size, n_layer=1, n_head=1,
                        tie_word_embeddings=False, bos_token_id=vocab["<eos>"], eos_token_id=vocab["<eos>"],
                        pad_token_id=vocab["<pad>"])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    if crafted:
        successor = {word: "blah" for word in words}
        successor["<|assistant|>"] = ANSWER_TOKENS[0]
        successor.update(zip(ANSWER_TOKENS, ANSWER_TOKENS[1:] + ["<eos>"]))
        successor["<eos>"] = "<eos>"
        with torch.no_grad():
            for parameter in model.transformer.h.parameters():  # residual branches add nothing
                parameter.zero_()
            for block in model.transformer.h:  # layer norms back to identity scale (zeroed above)
                block.ln_1.weight.fill_(1.0)
                block.ln_2.weight.fill_(1.0)
            model.transformer.wpe.weight.zero_()
            model.transformer.wte.weight.copy_(torch.eye(size))
            head = torch.zeros(size, size)
            for word, nxt in successor.items():
                head[vocab[nxt], vocab[word]] = 10.0
            model.lm_head.weight.copy_(head)
    target = folder / ("crafted" if crafted else "random")
    tokenizer.save_pretrained(target)
    model.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny_lm")
    return {"crafted": _save_tiny_model(folder, crafted=True), "random": _save_tiny_model(folder, crafted=False)}


def test_transformers_backend_batches_with_left_padding(tiny_models: dict[str, Path]) -> None:
    backend = TransformersBackend(str(tiny_models["crafted"]), device="cpu", batch_size=3, max_new_tokens=16,
                                  constrained=False)  # a word-level vocabulary cannot spell the grammar
    assert isinstance(backend, Backend) and backend.name == "transformers"
    # Different prompt lengths within a batch, and a last batch of one.
    requests = [("short", "a"), ("a much longer persona text with many words in it", "b c d e f g"),
                ("mid length persona", "h"), ("another", "context with words")]
    decisions = backend.decide(requests)
    answer = parse_decision(" ".join(ANSWER_TOKENS))
    assert decisions == [answer] * len(requests)
    assert answer.share_probability == 0.25 and answer.reaction == "fine"
    assert backend.usage.calls == len(requests)
    assert backend.usage.completion_tokens == len(requests) * (len(ANSWER_TOKENS) + 1)  # + eos
    tokenizer = backend._tokenizer
    lengths = [len(tokenizer(backend._render(render_messages(p, c)), add_special_tokens=False)["input_ids"])
               for p, c in requests]
    assert backend.usage.prompt_tokens == sum(lengths)


def test_transformers_backend_garbage_raises_after_retries(tiny_models: dict[str, Path]) -> None:
    backend = TransformersBackend(str(tiny_models["random"]), device="cpu", batch_size=2, max_new_tokens=6,
                                  max_retries=2, constrained=False)
    with pytest.raises(BackendError, match=r"after 3 attempts.*2 of 2 requests failed"):
        backend.decide([("p1", "c1"), ("p2", "c2")])
    assert backend.usage.calls == 2 * 3


def test_transformers_backend_unloadable_model(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(ConfigError, match="smollm2-135m"):  # neither a path nor a packaged name
        TransformersBackend(str(tmp_path / "missing")).decide([("p", "c")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(BackendError, match="loadable"):
        TransformersBackend(str(tmp_path / "broken"), constrained=False).decide([("p", "c")])
