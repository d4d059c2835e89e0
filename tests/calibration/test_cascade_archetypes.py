"""Archetype decisions in the cascade model: exact reductions to the plain model and its pooled loss,
the prior's formula, gradients reaching the gains, decisions changing the labels' cascades, the
paired bootstrap and the comparison end to end on a tiny synthetic world."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lpm.archetypes import EMOTIONS, DecisionTable
from lpm.calibration import cascade_archetypes as ca
from lpm.calibration.cascade_world import CascadeWorld, simulate_cascades
from lpm.calibration.fit_cascades import CascadeCalibration
from lpm.errors import ConfigError, DataFormatError
from lpm.targets import GROWTH_HOURS, cascade_targets

WORLD = CascadeWorld(agents=300, m=3, items=4, seed=1)
PARAMS = {"transmissibility": 0.03, "audience": 400.0, "audience_spread": 0.8, "attention_spread": 0.9,
          "feed_half_life_h": 0.3, "feed_tail": 1.6, "resharer_audience": 20.0, "resharer_audience_spread": 1.0,
          "resharer_item_spread": 0.9}
HORIZON = 2.0
HOURS = [h for h in GROWTH_HOURS if h <= HORIZON]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def table():
    """Exact cascades of the tiny world, labelled in turn (16 cascades, 4 per label)."""
    found = simulate_cascades(WORLD, PARAMS, hours=HOURS, batch=4, seed=2)
    return replace(found, labels=[ca.LABELS[i % 4] for i in range(found.num_cascades)])


def _decisions(k: int = 3, seed: int = 0, dim: int = 8, labels: int = 4) -> ca.CascadeDecisions:
    gen = torch.Generator().manual_seed(seed)
    share = torch.randn(k, labels, generator=gen, dtype=torch.float64)
    embeddings = torch.randn(k, labels, dim, generator=gen, dtype=torch.float64)
    return ca.CascadeDecisions(torch.randint(k, (WORLD.agents,), generator=gen), share - share.mean(),
                               torch.rand(k, labels, generator=gen, dtype=torch.float64) * 2 - 1, embeddings)


def _module(table, decisions=None, labels=ca.LABELS, dtype=torch.float32) -> ca.LabelledCascadeCalibration:
    return ca.LabelledCascadeCalibration(table, WORLD, PARAMS, decisions=decisions, labels=labels,
                                         fit_horizon_h=HORIZON, dtype=dtype)


def test_one_label_reproduces_the_pooled_loss_exactly(table):
    one = replace(table, labels=["x"] * table.num_cascades)
    pooled = CascadeCalibration(cascade_targets(one, HOURS), WORLD, PARAMS, fit_horizon_h=HORIZON, depth_weight=0.0)
    for decisions in (None, _decisions(labels=1)):  # with decisions, gains and head start at 0
        mine = _module(one, decisions, labels=("x",))
        for seed in (0, 3):
            expected, found = pooled.loss_terms(seed), mine.loss_terms(seed)
            for name in ("size", "shape", "root", "loss"):
                assert torch.equal(found[name], expected[name]), name
    assert float(expected["loss"].detach()) > 0


def test_zero_gains_and_head_reproduce_the_plain_per_label_loss(table):
    plain, extended = _module(table), _module(table, _decisions())
    assert float(extended.prior.per_label().detach().abs().max()) == 0.0
    assert torch.equal(plain.loss_terms(1)["loss"], extended.loss_terms(1)["loss"])
    assert set(extended.fitted_params()) == set(plain.fitted_params()) | set(ca.GAINS)


def test_per_label_loss_is_the_sum_of_each_labels_match(table):
    module = _module(table)
    size, direct = module.simulate_sizes(0)
    total = module.loss_terms(0)["loss"]
    parts = []
    for label in range(4):
        rows = [i for i, value in enumerate(table.labels) if value == ca.LABELS[label]]
        target = ca.label_targets(table.select(rows), [ca.LABELS[label]], HOURS)[0]
        columns = [c for c in range(WORLD.items) if c % 4 == label]
        parts.append(ca.match_loss(size[:, :, columns].reshape(size.size(0), -1).T, direct[:, columns].reshape(-1),
                                   target)["loss"])
    assert torch.allclose(total, sum(parts), rtol=1e-6)


def test_prior_follows_its_formula():
    decisions = _decisions(k=3, seed=4)
    prior = ca.ArchetypePrior(decisions, torch.tensor([0, 1, 2, 3, 0, 1]))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        prior.gains.copy_(torch.randn(2, generator=gen, dtype=torch.float64))
        prior.head.linear.weight.copy_(torch.randn_like(prior.head.linear.weight))
        prior.head.linear.bias.copy_(torch.randn_like(prior.head.linear.bias))
    found = prior()
    w, b = prior.head.linear.weight[0], prior.head.linear.bias[0]
    for a in range(3):
        for c, label in enumerate([0, 1, 2, 3, 0, 1]):
            expected = (prior.gains[0] * decisions.share_logit[a, label] + prior.gains[1] * decisions.arousal[a, label]
                        + decisions.reaction_embeddings[a, label] @ w + b)
            assert torch.allclose(found[a, c], expected)


def test_gain_gradient_matches_finite_differences(table):
    module = _module(table, _decisions(seed=6), dtype=torch.float64)
    with torch.no_grad():
        module.prior.gains.copy_(torch.tensor([0.4, -0.3], dtype=torch.float64))
    loss = module.loss_terms(2)["loss"]
    (grad,) = torch.autograd.grad(loss, module.prior.gains)
    eps = 1e-5
    for i in range(2):
        values = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                module.prior.gains[i] += sign * eps
                values.append(float(module.loss_terms(2)["loss"]))
                module.prior.gains[i] -= sign * eps
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(float(grad[i]) - numeric) <= 1e-4 * max(1.0, abs(numeric)), (i, float(grad[i]), numeric)
    assert float(grad.abs().max()) > 0


def test_decisions_make_the_labels_differ(table):
    """Archetypes that want to reshare label 0 and not label 2: those items grow larger."""
    decisions = _decisions(seed=7)
    share = torch.zeros(3, 4, dtype=torch.float64)
    share[:, 0], share[:, 2] = 1.0, -1.0
    decisions = replace(decisions, share_logit=share)
    module = _module(table, decisions)
    with torch.no_grad():
        plain_size, _ = module.simulate_sizes(0)
        module.prior.gains[0] = 2.0
        size, _ = module.simulate_sizes(0)
    final, plain_final = size[-1], plain_size[-1]  # (B, C)
    assert bool((final[:, 0] > plain_final[:, 0]).all()) and bool((final[:, 2] < plain_final[:, 2]).all())
    assert torch.equal(final[:, [1, 3]], plain_final[:, [1, 3]])  # their decisions are 0


def test_from_table_centres_share_logits_and_orders_columns():
    k, contexts = 2, ["other"] + [ca.CONTEXTS[label] for label in reversed(ca.LABELS)]
    gen = torch.Generator().manual_seed(8)
    share = torch.rand(k, 5, generator=gen) * 0.8 + 0.1
    emotion = torch.rand(k, 5, len(EMOTIONS), generator=gen) * 2 - 1
    table = DecisionTable(("p0", "p1"), tuple(contexts), share, torch.zeros(k, 5), emotion,
                          torch.randn(k, 5, 6, generator=gen), (("r",) * 5,) * 2)
    decisions = ca.CascadeDecisions.from_table(table, torch.tensor([0, 1, 1]))
    columns = [contexts.index(ca.CONTEXTS[label]) for label in ca.LABELS]
    logit = torch.logit(share[:, columns].double())
    assert torch.allclose(decisions.share_logit, logit - logit.mean(), atol=1e-6)
    assert torch.equal(decisions.arousal, emotion[:, columns, EMOTIONS.index("arousal")].double())


def test_bad_inputs_raise_typed_errors(table):
    with pytest.raises(DataFormatError, match="labelled"):
        ca.label_targets(table, ("true", "rumour"), HOURS)
    with pytest.raises(DataFormatError, match="labels"):
        ca.label_targets(replace(table, labels=None), ca.LABELS, HOURS)
    with pytest.raises(ConfigError, match="agents"):
        ca.LabelledCascadeCalibration(table, replace(WORLD, agents=200), PARAMS, decisions=_decisions())
    with pytest.raises(ConfigError, match="share_logit"):
        ca.CascadeDecisions(torch.zeros(3, dtype=torch.long), torch.zeros(2, 4), torch.zeros(2, 3),
                            torch.zeros(2, 4, 5))
    with pytest.raises(ConfigError, match="item labels"):
        ca.ArchetypePrior(_decisions(), torch.tensor([0, 4]))


def test_paired_bootstrap_brackets_the_point_difference(table):
    targets = ca.label_targets(table, ca.LABELS, HOURS)
    module = _module(table)
    plain = ca.held_out_loss(module, [0], 2)
    with torch.no_grad():
        module.model.cascade.raw_transmissibility += 0.5
    louder = ca.held_out_loss(module, [0], 2)
    diff, low, high = ca.paired_bootstrap(louder, plain, targets, draws=200)
    assert low <= diff <= high and low < high
    assert diff == pytest.approx(louder(targets) - plain(targets))
    assert ca.paired_bootstrap(plain, plain, targets, draws=50) == (0.0, 0.0, 0.0)


def test_fit_and_compare_end_to_end(table):
    module = _module(table, _decisions(seed=9))
    before = float(module.loss_terms(1000)["loss"].detach())
    found = ca.fit_labels(module, steps=3, first_seed=1000)
    assert found["steps"] == 3 and found["losses"][0] == pytest.approx(before)
    assert float(module.prior.gains.detach().abs().sum()) > 0  # the gains moved
    seen: list = []
    rows = ca.compare(table, table, WORLD, PARAMS, {"random": _decisions(seed=9)}, extra_steps=2, eval_batch=2,
                      draws=20, fit_horizon_h=HORIZON, exact_seeds=[5],
                      progress=lambda row, module: seen.append((row["arm"], module.fitted_params())))
    assert [row["arm"] for row in rows] == [f"{ca.BASELINE}, as given", ca.BASELINE, "random"]
    assert rows[1]["diff"] == 0.0 and rows[1]["test_loss"] == rows[1]["train_loss"]  # same table twice
    assert rows[2]["diff"] == pytest.approx(rows[2]["test_loss"] - rows[1]["test_loss"])
    assert rows[2]["exact_diff"] == pytest.approx(rows[2]["exact_test_loss"] - rows[1]["exact_test_loss"])
    assert rows[2]["exact_test_loss"] != rows[2]["test_loss"]  # sampled cascades, not the mean field
    assert [arm for arm, _ in seen] == [row["arm"] for row in rows] and "reshare_gain" in seen[2][1]


def test_exact_evaluation_samples_whole_cascades(table):
    module = _module(table)
    ca.held_out_loss(module, [0], 2, exact=True)
    assert type(module.estimator).__name__ == "Expected"  # restored after the sampled evaluation
    module.estimator = ca.Hard()
    size, direct = module.simulate_sizes(0)
    # sampled sizes; the root's share of them is the engine's attribution, not a sampled parent
    assert torch.equal(size, size.round()) and bool((direct <= size[-1] - 1 + 1e-4).all())
    assert bool((size[-1] >= size[0]).all()) and float(size[-1].max()) > 1


def test_first_adam_step_moves_gains_by_the_rate_and_the_head_by_rate_over_sqrt_dim(table):
    """Adam's first step moves each weight by its group's rate (the sign of its gradient times the rate)."""
    module = _module(table, _decisions(seed=10, dim=16))
    gains = module.prior.gains.detach().clone()
    weight = module.prior.head.linear.weight.detach().clone()
    transmissibility = module.model.cascade.raw_transmissibility.detach().clone()
    ca.fit_labels(module, steps=1, learning_rate=0.08)
    with torch.no_grad():
        assert torch.allclose((module.prior.gains - gains).abs(), torch.full((2,), 0.08), rtol=1e-3)
        moved = (module.prior.head.linear.weight - weight)[0].abs()
        assert torch.allclose(moved, torch.full_like(moved, 0.08 / 4.0), rtol=1e-3)
        step = float((module.model.cascade.raw_transmissibility - transmissibility).abs())
    assert step == pytest.approx(0.08, rel=1e-3)


def test_per_label_reference_sets_a_free_offset_per_label():
    prior = ca.ArchetypePrior(ca.CascadeDecisions.per_label(WORLD.agents), torch.tensor([0, 1, 2, 3, 0, 1]))
    offsets = torch.tensor([0.3, -0.2, 0.5, -1.0], dtype=torch.float64)
    with torch.no_grad():
        prior.head.linear.weight[0] = offsets
        prior.head.linear.bias[0] = 0.1
        prior.gains.fill_(2.0)  # no decided values: the gains do nothing
    assert torch.allclose(prior(), (offsets[[0, 1, 2, 3, 0, 1]] + 0.1)[None])
