"""k-means recovers planted clusters, is deterministic, repairs empty clusters; archetypes save and load."""

from __future__ import annotations

import pytest
import torch

from lpm.archetypes.clustering import Archetypes, _repair_empty, build_archetypes, kmeans
from lpm.errors import ConfigError
from tests.archetypes.test_personas import HashEmbedder


def blobs(per: int = 100, k: int = 5, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` tight blobs (sd 0.1) whose centres are >= ~14 apart: any good k-means separates them."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(k, dim) * 10.0
    label = torch.arange(k).repeat_interleave(per)
    x = centres[label] + 0.1 * torch.randn(k * per, dim, generator=gen)
    perm = torch.randperm(k * per, generator=gen)
    return x[perm], label[perm]


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to relabelling: the contingency table is a permutation matrix (times sizes)."""
    k = int(max(a.max(), b.max())) + 1
    table = torch.zeros(k, k, dtype=torch.int64).index_put_((a, b), torch.ones_like(a), accumulate=True)
    return bool(((table > 0).sum(0) <= 1).all() and ((table > 0).sum(1) <= 1).all())


def test_kmeans_recovers_planted_clusters_exactly() -> None:
    x, label = blobs()
    for seed in range(3):
        result = kmeans(x, 5, seed=seed)
        assert same_partition(result.assignment, label)
        assert torch.bincount(result.assignment).tolist() == [100] * 5
        assert result.inertia == pytest.approx(float(result.distance.sum()), rel=1e-5)


def test_kmeans_is_deterministic_and_chunking_does_not_matter() -> None:
    x = torch.randn(700, 4, generator=torch.Generator().manual_seed(1))
    a, b = kmeans(x, 6, seed=3), kmeans(x, 6, seed=3)
    c = kmeans(x, 6, seed=3, chunk=37)
    assert torch.equal(a.assignment, b.assignment) and torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.assignment, c.assignment)
    torch.testing.assert_close(a.centroids, c.centroids)


def test_weights_equal_repeated_rows() -> None:
    x, label = blobs(per=20, k=3, dim=3)
    weight = torch.randint(1, 5, (x.shape[0],), generator=torch.Generator().manual_seed(2))
    weighted = kmeans(x, 3, weight=weight.double(), seed=0)
    repeated = kmeans(x.repeat_interleave(weight, 0), 3, seed=0)
    assert same_partition(weighted.assignment, label)
    key = lambda c: c[torch.argsort(c[:, 0] * 100 + c[:, 1] * 10 + c[:, 2])]  # noqa: E731
    torch.testing.assert_close(key(weighted.centroids), key(repeated.centroids))


def test_empty_clusters_are_repaired() -> None:
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1], [9.0]])
    assignment = torch.tensor([0, 0, 0, 0, 0])
    dist = torch.tensor([0.0, 0.01, 25.0, 26.0, 81.0])
    centroids = torch.tensor([[0.0], [100.0], [200.0]])
    fixed, fixed_dist = _repair_empty(x, centroids, assignment, dist, 3)
    assert torch.bincount(fixed, minlength=3).min() >= 1
    assert fixed.tolist() == [0, 0, 0, 2, 1]  # the farthest points seed the empty clusters
    assert centroids[1].item() == 9.0 and fixed_dist[4] == 0
    # as many clusters as distinct points, many duplicates: every cluster still gets a member
    dup = torch.tensor([[0.0], [0.0], [0.0], [1.0], [1.0], [2.0]])
    assert torch.bincount(kmeans(dup, 3, seed=0).assignment, minlength=3).min() >= 1


def test_kmeans_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="k an int"):
        kmeans(torch.randn(5, 2), 6)
    with pytest.raises(ConfigError, match="finite"):
        kmeans(torch.tensor([[0.0], [float("nan")]]), 1)
    with pytest.raises(ConfigError, match="weights"):
        kmeans(torch.randn(5, 2), 2, weight=torch.zeros(5))


@pytest.fixture(scope="module")
def archetypes() -> Archetypes:
    return build_archetypes(3000, 12, seed=4, embedder=HashEmbedder())


def test_build_archetypes(archetypes: Archetypes) -> None:
    a = archetypes
    assert a.assignment.shape == (3000,) and a.k == 12
    assert int(a.sizes.sum()) == 3000 and int(a.sizes.min()) >= 1
    assert torch.equal(a.sizes, torch.bincount(a.assignment, minlength=12))
    assert torch.equal(a.assignment[a.representatives], torch.arange(12))  # each representative is a member
    assert a.persona_texts == a.personas.texts(a.representatives)
    first, inverse, _ = a.personas.distinct()
    assert torch.equal(a.assignment, a.assignment[first][inverse])  # identical personas share an archetype
    again = build_archetypes(3000, 12, seed=4, embedder=HashEmbedder())
    assert torch.equal(again.assignment, a.assignment) and again.persona_texts == a.persona_texts


def test_roles_separate_into_archetypes(archetypes: Archetypes) -> None:
    # role weighs most: most archetypes are dominated by one role
    purity = []
    for k in range(archetypes.k):
        roles = archetypes.personas.role[archetypes.assignment == k]
        purity.append(float(torch.bincount(roles, minlength=4).max()) / roles.numel())
    assert sum(p > 0.8 for p in purity) >= archetypes.k // 2


def test_save_and_load(archetypes: Archetypes, tmp_path) -> None:
    paths = archetypes.save(tmp_path / "arch")
    assert paths["personas"].is_file() and paths["archetypes"].is_file()
    back = Archetypes.load(tmp_path / "arch")
    assert torch.equal(back.assignment, archetypes.assignment) and back.persona_texts == archetypes.persona_texts
    assert torch.equal(back.sizes, archetypes.sizes) and torch.equal(back.representatives, archetypes.representatives)
    torch.testing.assert_close(back.centroids, archetypes.centroids)
    assert torch.equal(back.personas.interests, archetypes.personas.interests) and back.weights == archetypes.weights
