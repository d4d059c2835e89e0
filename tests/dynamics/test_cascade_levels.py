"""Level tracking of the cascade state (LevelCascadeState): expected reshares at depth 1 and 2 of the trees."""

from __future__ import annotations

import pytest
import torch

import lpm
from lpm import kernels, relax
from lpm.dynamics import Cascade, Item, init_cascade_state
from lpm.dynamics.cascade_state import LevelCascadeState
from lpm.errors import ConfigError, StateError
from lpm.graph import Graph
from lpm.targets import cascade_targets
from lpm.data.cascades import CascadeTable
from tests.helpers import assert_cascade_gradients_match_finite_differences



def _second(state, events) -> torch.Tensor:
    """Expected depth-2 reshares of the step (none before the first)."""
    none = torch.zeros_like(state.reshared[:, 0, :])
    return none if events.second_level_reshares is None else events.second_level_reshares


SECOND = {"second": _second}


def _world(feed_half_life_h=None, **kwargs) -> lpm.Model:
    cascade = Cascade([Item(source=3), Item(source=40), Item(source=77)], transmissibility=0.05, audience=60.0,
                      audience_spread=0.5, resharer_audience=8.0, resharer_audience_spread=0.8,
                      resharer_item_spread=0.4, feed_half_life_h=feed_half_life_h, **kwargs)
    return lpm.Model(cascade=cascade, dt=0.5).double()


def _state(batch: int, n: int, levels: bool) -> lpm.PopulationState:
    state = lpm.PopulationState.create(torch.zeros(batch, n, 1, dtype=torch.float64),
                                       torch.zeros(batch, n, 2, dtype=torch.float64))
    return init_cascade_state(state, 3, levels=levels)


def _levels_and_counts(model: lpm.Model, graph: Graph, batch: int, steps: int) -> tuple[float, float, float, float]:
    """Tracked expectations and the exact trees' counts of depth-1 and depth-2 reshares (Hard draws)."""
    run = lpm.simulate(model, _state(batch, graph.num_nodes, True), graph, steps=steps, seed=list(range(batch)),
                       estimator=relax.Hard(), record=SECOND)
    final = run.final
    profile = cascade_targets(CascadeTable.from_state(final, [0.0] * 3), [steps * model.dt]).depth_profile.double()
    return (float(final.cascade.first_level_reshared.detach().sum()), float(profile[:, 0].sum()),
            float(run["second"][1:].detach().sum()), float(profile[:, 1].sum()))


def test_levels_follow_generations_when_posts_show_for_one_step():
    """Visible for one step only, every post of step t is exposed in step t + 1 and nothing older is:
    reshares of step s sit at depth s, so the tracked levels are the trees' counts (up to the 1e-6
    guard in the exposure shares), through the graph and the out-of-graph audiences alike."""
    model = _world()
    first, first_count, second, second_count = _levels_and_counts(model, Graph.holme_kim(400, 3, 0.3, seed=2), 24, 10)
    assert second_count > 100 and first_count > 100
    assert first == pytest.approx(first_count, rel=1e-4) and second == pytest.approx(second_count, rel=1e-4)


def test_levels_are_the_exact_trees_counts_in_expectation_when_generations_mix():
    """With a feed half-life, posts of several generations are visible at once, so a reshare's depth is
    random. Through out-of-graph audiences (no graph edges here) an exact tree's parent is drawn in
    proportion to the exposures it came through, so the tracked expectation of a reshare's level is its
    conditional probability: summed, they differ from the trees' counts by a martingale whose
    variance is at most the expected count (Bernoulli variances p (1 - p) <= p). 4 standard deviations."""
    n = 600
    edgeless = Graph.from_edge_index(torch.tensor([[1], [2]]), n)
    model = _world(feed_half_life_h=1.0)
    first, first_count, second, second_count = _levels_and_counts(model, edgeless, 16, 12)
    assert second_count > 100 and first_count > 100
    assert abs(first_count - first) > 1e-3 or abs(second_count - second) > 1e-3  # depths are random here
    assert abs(first_count - first) <= 4 * first ** 0.5
    assert abs(second_count - second) <= 4 * second ** 0.5


def test_exact_runs_give_the_ratio_to_the_resharers_whose_parent_is_the_source(monkeypatch):
    """With a first-level ratio and mixing generations, exact runs follow the trees' own depth-1
    reshares (their drawn parents), so the tracked depth-1 count is the trees' count and the expected
    depth-2 reshares stay a martingale compensator of the trees' count (4 standard deviations, as
    above). Boosting agents by the probability that they are attached instead (the mean field's
    rule) boosts depth-2 agents too, in expectation p (1 + (r - 1) p) at depth 2 against p r: far
    fewer depth-2 children than expected, which the same bound catches."""
    n = 600
    edgeless = Graph.from_edge_index(torch.tensor([[1], [2]]), n)
    model = _world(feed_half_life_h=1.0, first_level_audience_ratio=4.0)
    first, first_count, second, second_count = _levels_and_counts(model, edgeless, 16, 12)
    assert first_count > 100 and second_count > 100
    assert first == first_count
    assert abs(second_count - second) <= 4 * second ** 0.5
    import lpm.dynamics.cascade as cascade_module

    monkeypatch.setattr(cascade_module, "exact_events", lambda estimator: False)  # the probability rule
    first, first_count, second, second_count = _levels_and_counts(model, edgeless, 16, 12)
    assert second_count < second - 4 * second ** 0.5


def test_graph_parents_are_drawn_in_proportion_to_their_posts_visibility(monkeypatch):
    """On a clustered graph with an ageing feed (a tail of old, faded posts beside fresh ones), an
    exact tree's graph parent is the followee whose post convinced: drawn in proportion to its
    visibility, as the exposure count weighs it. Then both level counts are martingales around their
    compensators (4 standard deviations, as above):
    * depth 1: with the probability rule (no ratio, so the dynamics do not depend on it), the tracked
      level is the sum of each reshare's probability of sitting at depth 1;
    * depth 2: with the exact rule, the tracked expectation given the trees' own depth-1 reshares.
    Drawing uniformly among visible followees (monkeypatched) over-weights faded posts, which are the
    source's and the first generation's: the trees' depth-1 count then exceeds its compensator by
    ~10 standard deviations and the depth-2 count by ~8 here."""
    import lpm.dynamics.cascade as cascade_module

    graph = Graph.holme_kim(600, 4, 0.5, seed=3)
    model = _world(feed_half_life_h=1.0, feed_tail=1.5)
    weighted = kernels.sample_visible_followee

    def uniform_among_visible(graph, posts, index, uniform, edge_scale=None):
        return weighted(graph, (posts > 0).to(posts.dtype), index, uniform, edge_scale)

    def deviations() -> tuple[float, float]:
        """Standard deviations of the trees' depth-1 and depth-2 counts from their compensators."""
        with monkeypatch.context() as patch:
            patch.setattr(cascade_module, "exact_events", lambda estimator: False)
            first, first_count, _, _ = _levels_and_counts(model, graph, 64, 12)
        _, _, second, second_count = _levels_and_counts(model, graph, 64, 12)
        assert first_count > 1000 and second_count > 1000
        return (first_count - first) / first ** 0.5, (second_count - second) / second ** 0.5

    assert all(abs(z) <= 4 for z in deviations())
    monkeypatch.setattr(kernels, "sample_visible_followee", uniform_among_visible)
    assert all(z > 4 for z in deviations())


def test_exact_runs_without_trees_attach_exactly_with_the_parents_probability():
    """Without recorded parents an exact run draws each reshare's attachment with the probability the
    parent draw has, so the depth-1 part is 0/1 per reshare (not a probability) and its total agrees
    with the run that records trees (same seeds, so the same resistances; 5 standard deviations of
    the difference of two such counts, each with variance at most its mean)."""
    n, batch = 600, 16
    edgeless = Graph.from_edge_index(torch.tensor([[1], [2]]), n)
    totals = []
    for record_trees in (True, False):
        model = _world(feed_half_life_h=1.0, first_level_audience_ratio=4.0)
        model.cascade.record_trees = record_trees
        final = lpm.simulate(model, _state(batch, n, True), edgeless, steps=12, seed=list(range(batch)),
                             estimator=relax.Hard(), record={}).final
        first = final.cascade.first_level_reshared
        assert torch.equal(first, (first > 0.5).to(first.dtype))  # exact indicators
        assert bool((first <= final.reshared).all())
        totals.append(float(first.sum()))
    assert totals[0] > 200
    assert abs(totals[0] - totals[1]) <= 5 * (totals[0] + totals[1]) ** 0.5


@pytest.mark.parametrize("estimator", [relax.Hard(), relax.Expected()])
def test_tracking_levels_leaves_the_dynamics_unchanged(estimator):
    n, batch = 300, 3
    graph = Graph.holme_kim(n, 3, 0.3, seed=4)
    model = _world(feed_half_life_h=0.7, feed_tail=1.8)
    plain = lpm.simulate(model, _state(batch, n, False), graph, steps=8, seed=[5, 6, 7], estimator=estimator, record={})
    tracked = lpm.simulate(model, _state(batch, n, True), graph, steps=8, seed=[5, 6, 7], estimator=estimator,
                           record={})
    torch.testing.assert_close(tracked.final.reshared, plain.final.reshared, rtol=0, atol=0)
    torch.testing.assert_close(tracked.final.parent, plain.final.parent, rtol=0, atol=0)
    levels = tracked.final.cascade
    # the depth-1 part is a part: between 0 and the whole, for the reshares and their visible posts
    assert bool((levels.first_level_reshared <= levels.reshared + 1e-12).all())
    assert bool((levels.first_level_frontier <= levels.frontier + 1e-12).all())
    assert float(levels.first_level_reshared.detach().sum()) > 0


def test_second_level_gradients_match_finite_differences():
    cascade = Cascade([Item(source=3), Item(source=17)], transmissibility=0.2, audience=30.0, resharer_audience=4.0,
                      resharer_audience_spread=0.7, resharer_item_spread=0.6, feed_half_life_h=0.6, feed_tail=1.5,
                      first_level_audience_ratio=1.7)
    checked = assert_cascade_gradients_match_finite_differences(
        cascade, Graph.holme_kim(40, 2, 0.3, seed=6), lambda run: run["second"][1:].sum(), SECOND, levels=True)
    # transmissibility, audience, resharer audience and its two spreads, half-life, tail, first-level ratio
    assert checked == 8


def test_level_state_layout_is_checked():
    state = _state(2, 50, True)
    assert isinstance(state.cascade, LevelCascadeState)
    assert len(state.cascade.tensors()) == 8  # the six of CascadeState and the two levels
    bad = state.cascade.replace(first_level_frontier=torch.zeros(2, 50, 4, dtype=torch.float64))
    with pytest.raises(StateError, match="first_level_frontier"):
        bad.check_layout(2, 50, state.opinion)
    negative = state.cascade.replace(first_level_reshared=-torch.ones(2, 50, 3, dtype=torch.float64))
    with pytest.raises(StateError, match="first_level_reshared"):
        negative.validate(50)
    picked = state.select(torch.tensor([1])).cascade  # batch views keep the kind and its levels
    assert isinstance(picked, LevelCascadeState) and picked.first_level_reshared.shape == (1, 50, 3)


def test_first_level_audience_ratio_in_closed_form():
    """Two visible resharers, one attached to the source: with audience A each reaches A / N exposures
    per agent, the attached one r times that, so an agent's one-step hazard is -(1 + r) (A / N)
    log(1 - q), and the expected reshares attached to the attached one are the share r / (1 + r)."""
    n, q, audience, ratio = 500, 0.2, 300.0, 2.5
    edgeless = Graph.from_edge_index(torch.tensor([[7], [8]]), n)
    cascade = Cascade([Item(source=0)], transmissibility=q, resharer_audience=audience,
                      first_level_audience_ratio=ratio)
    model = lpm.Model(cascade=cascade, dt=0.5).double()
    state = model.init_state(lpm.PopulationState.create(torch.zeros(2, n, 1, dtype=torch.float64),
                                                        torch.zeros(2, n, 2, dtype=torch.float64)))
    assert isinstance(state.cascade, LevelCascadeState)  # the ratio needs levels: init_state makes them
    visible = torch.zeros(2, n, 1, dtype=torch.float64)
    visible[:, [0, 1, 2]] = 1.0  # the source and two resharers
    attached = torch.zeros_like(visible)
    attached[:, 1] = 1.0
    state = state.replace(cascade=state.cascade.replace(reshared=visible, frontier=visible,
                                                        first_level_reshared=attached, first_level_frontier=attached))
    run = lpm.simulate(model, state, edgeless, steps=1, seed=[1, 2], estimator=relax.Expected(), record=SECOND)
    hazard = -(1 + ratio) * (audience / n) * torch.log1p(torch.tensor(-q, dtype=torch.float64))
    torch.testing.assert_close(run.final.hazard[:, 3:, 0], hazard.expand(2, n - 3))
    new = run.final.reshared[:, 3:, 0].sum(1)
    torch.testing.assert_close(run["second"][1, :, 0], new * ratio / (1 + ratio), rtol=1e-6, atol=0)


def test_first_level_audience_ratio_of_one_is_the_model_without_it_and_needs_levels():
    n = 300
    graph = Graph.holme_kim(n, 3, 0.3, seed=4)
    with_ratio = _world(feed_half_life_h=0.7, first_level_audience_ratio=1.0)
    plain = _world(feed_half_life_h=0.7)
    a = lpm.simulate(with_ratio, _state(3, n, True), graph, steps=8, seed=[5, 6, 7], estimator=relax.Hard(), record={})
    b = lpm.simulate(plain, _state(3, n, False), graph, steps=8, seed=[5, 6, 7], estimator=relax.Hard(), record={})
    torch.testing.assert_close(a.final.parent, b.final.parent, rtol=0, atol=0)
    with pytest.raises(StateError, match="LevelCascadeState"):
        lpm.simulate(with_ratio, _state(3, n, False), graph, steps=1, seed=[5, 6, 7], record={})
    with pytest.raises(ConfigError, match="first_level_audience_ratio"):
        Cascade([Item(source=0)], first_level_audience_ratio=2.0)  # no resharer audience to scale
