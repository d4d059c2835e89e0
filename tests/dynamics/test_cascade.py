"""Cascades: IC closed forms on trees, the per-step reshare law, complex contagion, linear
threshold, recorded trees, gradients, and invariances with cascade state."""

from __future__ import annotations

import pytest
import torch

import lpm
from lpm import observables, relax
from lpm.dynamics import Cascade, Item, LinearThreshold, init_cascade_state
from lpm.errors import ConfigError, StateError
from lpm.graph import Graph
from lpm.rng import CounterRNG
from lpm.testing import small_graph, step_context
from tests.helpers import assert_cascade_gradients_match_finite_differences, assert_gradients_match_finite_differences, gradcheck_parameters, make_state

RECORD = dict(observables.CASCADE)


def binary_tree(depth: int) -> tuple[Graph, torch.Tensor]:
    """Agent 0 is the root; node k is followed by 2k+1 and 2k+2. Returns the graph and node depths."""
    n = 2 ** (depth + 1) - 1
    child = torch.arange(1, n)
    graph = Graph.from_edge_index(torch.stack([(child - 1) // 2, child]), n)
    node_depth = torch.floor(torch.log2(torch.arange(n, dtype=torch.float64) + 1)).long()
    return graph, node_depth


def test_independent_cascade_on_a_tree_reaches_depth_d_with_probability_p_to_the_d():
    graph, depth = binary_tree(4)
    batch, p = 4000, 0.6
    state = lpm.PopulationState.sample(graph.num_nodes, seed=0).expand_batch(batch)
    model = lpm.Model(cascade=Cascade.independent_cascade([Item(source=0)], p), dt=1.0).double()
    with torch.no_grad():
        traj = lpm.simulate(model, state.to(dtype=torch.float64), graph, steps=6, seed=1, record=RECORD,
                            estimator=relax.Hard())
    reached = traj.final.reshared[..., 0]  # (B, N)
    p_exact = float(model.cascade.transmissibility.detach())
    for d in range(5):
        share = float(reached[:, depth == d].mean())
        expected = p_exact**d
        # binomial s.e. over >= 4000 draws is <= 0.008; 0.04 is 5 s.e.
        assert abs(share - expected) < 0.04, (d, share, expected)
    # one generation per step: the source posts at 0, depth-d nodes reshare at the end of step d - 1, time d
    times = traj.final.reshare_time[..., 0]
    members = torch.isfinite(times)
    assert torch.equal(times[members], depth.double().expand_as(times)[members])
    assert torch.equal(traj.final.parent[..., 0][members & (depth > 0)], ((torch.arange(graph.num_nodes) - 1) // 2).expand(batch, -1)[members & (depth > 0)])


def test_one_step_reshare_probability_is_one_minus_q_to_the_k():
    """Agent 3 follows agents 0, 1, 2, all in the frontier: P = 1 - (1 - q)^3."""
    graph = Graph.from_edge_index(torch.tensor([[0, 1, 2], [3, 3, 3]]), 4)
    batch = 20000
    state = init_cascade_state(lpm.PopulationState.sample(4, seed=0).to(dtype=torch.float64), 1).expand_batch(batch)
    frontier = state.frontier.clone()
    frontier[:, :3, 0] = 1
    state = state.replace(frontier=frontier, reshared=frontier.clone())
    cascade = Cascade([Item(source=0, start_h=1e9)], transmissibility=0.2).double()
    changes = cascade(state, graph, step_context(state, seed=0, estimator=relax.Hard())).state["cascade"]
    q = float(cascade.transmissibility)
    share = float(changes.reshared[:, 3, 0].mean())
    assert abs(share - (1 - (1 - q) ** 3)) < 0.015  # s.e. 0.0035
    assert torch.all(changes.exposures[:, 3, 0] == 3)
    parents = changes.parent[:, 3, 0][changes.reshared[:, 3, 0] > 0]
    frequencies = torch.bincount(parents, minlength=3).double() / parents.numel()
    # ~9800 reshares: s.e. of each 1/3 share ~0.005; 0.025 is 5 s.e.
    assert torch.allclose(frequencies, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.025), frequencies


def test_complex_contagion_probability_saturates_with_exposures():
    """One frontier followee, n - 1 earlier exposures: P = q h(n), h(n) = n^2 / (n^2 + 2^2)."""
    graph = Graph.from_edge_index(torch.tensor([[0], [1]]), 2)
    cascade = Cascade([Item(source=0, start_h=1e9)], transmissibility=0.5, dose_response="complex",
                      half_exposures=2.0, hill=2.0).double()
    batch = 20000
    base = init_cascade_state(lpm.PopulationState.sample(2, seed=0).to(dtype=torch.float64), 1).expand_batch(batch)
    frontier = base.frontier.clone()
    frontier[:, 0, 0] = 1
    q = float(cascade.transmissibility.detach())
    shares = []
    for earlier in (0.0, 1.0, 2.0, 5.0, 50.0):
        exposures = base.exposures.clone()
        exposures[:, 1, 0] = earlier
        state = base.replace(frontier=frontier, exposures=exposures)
        ctx = step_context(state, t=int(earlier), time_h=0.0, seed=1, estimator=relax.Hard())
        changes = cascade(state, graph, ctx).state["cascade"]
        share = float(changes.reshared[:, 1, 0].mean())
        n = earlier + 1
        assert abs(share - q * n**2 / (n**2 + 4.0)) < 0.015  # s.e. <= 0.0036
        shares.append(share)
    assert shares == sorted(shares) and shares[1] > 2 * shares[0]  # the second exposure reinforces the first


def test_complex_contagion_raises_reshares_after_repeated_exposure():
    graph = small_graph(200, 6.0, seed=1, isolated=0, hub=False)
    state = lpm.PopulationState.sample(200, seed=1).to(dtype=torch.float64).expand_batch(200)
    sizes = {}
    for dose in ("independent", "complex"):
        model = lpm.Model(cascade=Cascade([Item(source=i) for i in range(3)], transmissibility=0.08,
                                          dose_response=dose, half_exposures=1.0, hill=3.0), dt=1.0).double()
        with torch.no_grad():
            traj = lpm.simulate(model, state, graph, steps=25, seed=2, record=RECORD, estimator=relax.Hard())
        sizes[dose] = float(traj["reshares"][-1].mean())
    # with half-saturation at 1 exposure and hill 3, single exposures are 2x less effective: smaller cascades
    assert sizes["complex"] < sizes["independent"]


def test_linear_threshold_matches_explicit_rule():
    graph = small_graph(30, 4.0, seed=3, isolated=0, hub=False)
    state = init_cascade_state(lpm.PopulationState.sample(30, seed=3).to(dtype=torch.float64), 2)
    reshared = state.reshared.clone()
    reshared[0, :8, 0] = 1
    reshared[0, 10:20, 1] = 1
    state = state.replace(reshared=reshared, frontier=reshared.clone())
    lt = LinearThreshold([Item(source=0, start_h=1e9), Item(source=10, start_h=1e9)], tau=1e-6).double()
    rng = CounterRNG.from_seed(0, 1)
    changes = lt(state, graph, step_context(state, rng=rng, estimator=relax.Hard())).state["cascade"]
    theta = rng.uniform(-1, 4, (30, 2), torch.float64)[0]
    adj = torch.zeros(30, 30, dtype=torch.float64)
    adj[graph.row, graph.col.long()] = 1
    for i in range(30):  # explicit per-agent rule
        for c in range(2):
            share = float((adj[i] * reshared[0, :, c]).sum() / adj[i].sum())
            expected = 1.0 if reshared[0, i, c] == 1 or share > theta[i, c] else 0.0
            assert float(changes.reshared[0, i, c]) == expected


def cascade_model(**kwargs) -> lpm.Model:
    n = 12
    gen = torch.Generator().manual_seed(0)
    cascade = Cascade(
        [Item(source=0, stance=0.8), Item(source=5, stance=-0.5, start_h=1.0)],
        transmissibility=0.3, interest_weight=0.5, arousal_weight=0.7, alignment_weight=1.2, attention=0.7,
        prior=torch.randn(3, 2, generator=gen), archetype=torch.randint(0, 3, (n,), generator=gen),
        interest_similarity=torch.rand(n, 2, generator=gen), **kwargs,
    )
    return lpm.Model(cascade=cascade, emotion=lpm.dynamics.EmotionContagion(), dt=0.5).double()


@pytest.mark.parametrize("dose", ["independent", "complex"])
def test_cascade_gradcheck(dose):
    graph = small_graph(12, 3.0, seed=4)
    state = init_cascade_state(make_state(12, seed=4), 2)
    frontier = state.frontier.clone()
    frontier[:, 0, 0] = 1
    frontier[:, 3, 1] = 0.6
    state = state.replace(frontier=frontier, reshared=frontier.clone(), exposures=frontier * 2)
    rng = CounterRNG.from_seed(0, 2)
    module = cascade_model(dose_response=dose).cascade

    def fn(call):
        changes = call(state, graph, step_context(state, t=3, dt=0.5, rng=rng,
                                                  estimator=relax.RelaxedBernoulli(0.5))).state["cascade"]
        return torch.cat([changes.reshared, changes.exposures], -1)

    assert gradcheck_parameters(module, fn)


def test_finite_differences_of_final_reach_through_simulate():
    graph = small_graph(12, 3.0, seed=5)
    state = make_state(12, batch=2, seed=5)
    model = cascade_model()
    estimator = relax.RelaxedBernoulli(0.5)

    def loss():
        return lpm.simulate(model, state, graph, steps=12, seed=[3, 4], estimator=estimator, record=RECORD)["reshares"][-1].sum()

    assert assert_gradients_match_finite_differences(model.cascade, loss) == 5  # transmissibility, 3 weights, attention


def test_cascade_batch_checkpoint_and_resume_invariances(tmp_path):
    graph = small_graph(40, 3.0, seed=6)
    state = make_state(40, batch=3, seed=6)
    model = lpm.Model(cascade=Cascade([Item(source=0), Item(source=7, start_h=2.0)], transmissibility=0.4,
                                      attention=0.8), dt=0.5).double()
    with torch.no_grad():
        full = lpm.simulate(model, state, graph, steps=20, seed=[5, 6, 5], record=RECORD)
        single = lpm.simulate(model, state.select(1), graph, steps=20, seed=[6], record=RECORD)
        chunked = lpm.simulate(model, state, graph, steps=20, seed=[5, 6, 5], record=RECORD, checkpoint_every=3)
        path = tmp_path / "c.pt"
        lpm.simulate(model, state, graph, steps=10, seed=[5, 6, 5], record=RECORD, save_path=path, save_every=5)
        resumed = lpm.simulate(model, state, graph, steps=20, seed=[5, 6, 5], record=RECORD, save_path=path,
                               save_every=5, resume=True)
    assert torch.equal(full["reshares"][:, 1:2], single["reshares"])
    assert torch.equal(full.final.parent[1:2], single.final.parent)  # trees too, not only sizes
    assert torch.equal(full["reshares"][:, 0], full["reshares"][:, 2])  # same seed, same draws
    for other in (chunked, resumed):
        assert torch.equal(full["reshares"], other["reshares"])
        assert torch.equal(full.final.parent, other.final.parent)
    # the second item starts at 2 h: nobody has it before then
    assert torch.all(full["reshares"][:4, :, 1] == 0) and torch.all(full["reshares"][5:, :, 1] >= 1)  # 4 steps = 2 h


def test_cascade_permutation_relabels_trees():
    graph = small_graph(30, 3.0, seed=7)
    state = make_state(30, batch=1, seed=7)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    model = lpm.Model(cascade=Cascade.independent_cascade([Item(source=0)], 0.5), dt=1.0).double()
    rel_model = lpm.Model(cascade=Cascade.independent_cascade([Item(source=int(perm[0]))], 0.5), dt=1.0).double()
    # deterministic spread (p -> 1) so that draws tied to agent indices do not matter
    for m in (model, rel_model):
        m.cascade.raw_transmissibility.data.fill_(40.0)
    with torch.no_grad():
        a = lpm.simulate(model, state, graph, steps=10, seed=0, record=RECORD).final
        b = lpm.simulate(rel_model, state.permute(perm), graph.permute(perm), steps=10, seed=0, record=RECORD).final
    assert torch.equal(b.reshare_time.index_select(1, perm), a.reshare_time)
    # trees too: agent i's parent j becomes perm[i]'s parent perm[j]
    parent_a = a.parent[0, :, 0]
    relabelled = torch.where(parent_a >= 0, perm[parent_a.clamp_min(0)], parent_a)
    assert torch.equal(b.parent[0, perm, 0], relabelled)


def test_cascade_rejects_bad_config():
    with pytest.raises(ConfigError, match="at least one item"):
        Cascade([])
    with pytest.raises(ConfigError, match="stance"):
        Item(source=0, stance=2.0)
    with pytest.raises(ConfigError, match="non-negative agent index"):
        Item(source=-1)
    with pytest.raises(ConfigError, match="dose_response"):
        Cascade([Item(0)], dose_response="sigmoid")
    with pytest.raises(ConfigError, match="together"):
        Cascade([Item(0)], prior=torch.zeros(2, 1))
    with pytest.raises(ConfigError, match=r"shape \(K, 1\)"):
        Cascade([Item(0)], prior=torch.zeros(2, 3), archetype=torch.zeros(5, dtype=torch.long))
    model = lpm.Model(cascade=Cascade([Item(source=50)]))
    with pytest.raises(StateError, match="sources < 20"):
        lpm.simulate(model, lpm.PopulationState.sample(20, seed=0), small_graph(20), steps=1, seed=0)


def test_visibility_closed_forms():
    exponential = Cascade([Item(source=0)], feed_half_life_h=2.0)
    power = Cascade([Item(source=0)], feed_half_life_h=2.0, feed_tail=1.5)
    age = torch.tensor([0.0, 2.0, 4.0, 2.0 * 7.0, float("inf")], dtype=torch.float64)
    # exponential: halves every half-life, cut below 1% (2^-7 < 0.01), zero when never posted
    assert exponential.visibility(age).tolist() == pytest.approx([1.0, 0.5, 0.25, 0.0, 0.0])
    # power law: (1 + age / tau)^-a with tau = h / (2^(1/a) - 1): halves at h too, with a long tail
    tau = 2.0 / (2 ** (1 / 1.5) - 1)
    expected = [(1 + a / tau) ** -1.5 if a != float("inf") else 0.0 for a in age.tolist()]
    assert power.visibility(age.float()).tolist() == pytest.approx(expected, rel=1e-5)
    assert float(power.visibility(torch.tensor(2.0)).detach()) == pytest.approx(0.5, rel=1e-6)
    assert float(power.visibility(torch.tensor(14.0)).detach()) > 0.05  # still visible where the exponential is cut
    with pytest.raises(ConfigError, match="feed_tail > 1"):
        Cascade([Item(source=0)], feed_half_life_h=2.0, feed_tail=0.9)


def test_out_of_graph_audience_reshares_attach_to_the_source():
    """An isolated source (no followers in the graph) still reaches the agents through its audience:
    each agent gets A/N exposures, so one step's reshare probability is 1 - (1 - q)^(A/N)."""
    n, audience, q = 4000, 2000.0, 0.3
    graph = Graph.from_edge_index(torch.tensor([[1], [2]]), n)  # one unrelated edge
    model = lpm.Model(cascade=Cascade([Item(source=0)], transmissibility=q, audience=audience), dt=1.0)
    state = init_cascade_state(lpm.PopulationState.create(torch.zeros(4, n, 1), torch.zeros(4, n, 2)), 1)
    trajectory = lpm.simulate(model, state, graph, steps=1, record={}, seed=[1, 2, 3, 4], estimator=relax.Hard())
    final = trajectory.final
    expected = (n - 1) * (1 - (1 - q) ** (audience / n))
    resharers = final.reshared[:, 1:, 0].sum(1)
    # 4 x 3999 Bernoulli draws: the mean is within 4 standard errors
    assert float(resharers.mean()) == pytest.approx(expected, abs=4 * (expected / 4) ** 0.5)
    new = final.reshared[:, 1:, 0] > 0
    assert bool((final.parent[:, 1:, 0][new] == 0).all())  # every one hangs off the source


def test_heterogeneous_attention_audience_and_power_law_feed_match_finite_differences():
    cascade = Cascade([Item(source=0), Item(source=3)], transmissibility=0.2, attention=0.4, attention_spread=0.8,
                      audience=30.0, audience_spread=0.5, feed_half_life_h=0.5, feed_tail=1.7)
    checked = assert_cascade_gradients_match_finite_differences(
        cascade, small_graph(12, 3.0, seed=5), lambda run: run["reshares"][-1].sum(), RECORD,
        estimator=relax.RelaxedBernoulli(0.5), seed=5)
    assert checked == 7  # transmissibility, attention, attention spread, audience, audience spread, half-life, tail


@pytest.mark.parametrize("tail", [None, 1.5])
def test_frontier_ages_as_the_visibility_of_each_post(tail):
    """The step ages visibility from the frontier alone (no event times, so relaxed and expected
    events work too); for exact events it equals visibility(age) of every reshare."""
    graph = lpm.Graph.holme_kim(800, 4, 0.3, seed=1)
    model = lpm.Model(cascade=Cascade([Item(source=0), Item(source=7)], transmissibility=0.2, attention=0.5,
                                      feed_half_life_h=1.0, feed_tail=tail))
    state = init_cascade_state(lpm.PopulationState.create(torch.zeros(2, 800, 1), torch.zeros(2, 800, 2)), 2)
    with torch.no_grad():
        final = lpm.simulate(model, state, graph, steps=30, record={}, seed=[1, 2], estimator=relax.Hard()).final
        expected = final.reshared * model.cascade.visibility(30 * model.dt - final.reshare_time)
    assert int(final.reshared.sum()) > 10
    assert torch.allclose(final.frontier, expected, atol=1e-6)


def test_resharer_audience_exposes_everyone_in_closed_form():
    """Without graph edges, the only exposures after the seed step come from the audiences: the
    source's ``A/N`` and each other resharer's ``A_r/N`` (no spread: the same for every resharer),
    so the next step's reshare probability of an agent is ``1 - (1 - q)^(A_r R / N)`` with ``R``
    non-source resharers in the frontier (feeds show a post for one step)."""
    n, q, resharer_audience = 3000, 0.3, 1500.0
    graph = Graph.from_edge_index(torch.tensor([[1], [2]]), n)
    cascade = Cascade([Item(source=0)], transmissibility=q, resharer_audience=resharer_audience)
    model = lpm.Model(cascade=cascade, dt=1.0)
    state = init_cascade_state(lpm.PopulationState.create(torch.zeros(4, n, 1), torch.zeros(4, n, 2)), 1)
    frontier = torch.zeros(4, n, 1)
    frontier[:, 0] = 1.0  # the source: reaches nobody (no source audience, no edges)
    frontier[:, 5:9] = 1.0  # four resharers
    state = state.replace(reshared=frontier.clone(), frontier=frontier, reshare_time=torch.where(
        frontier > 0, torch.zeros_like(frontier), torch.full_like(frontier, float("inf"))))
    with torch.no_grad():
        final = lpm.simulate(model, state, graph, steps=1, record={}, seed=[1, 2, 3, 4], estimator=relax.Hard()).final
    hazard = final.hazard[:, 9:, 0]  # agents not yet resharing
    expected_hazard = -(resharer_audience * 4 / n) * torch.log1p(torch.tensor(-q))
    assert torch.allclose(hazard, expected_hazard.expand_as(hazard), rtol=1e-5)
    new = (final.reshared[:, 9:, 0] > 0)
    expected = (n - 9) * (1 - (1 - q) ** (resharer_audience * 4 / n))
    assert float(new.sum(1).double().mean()) == pytest.approx(expected, abs=4 * (expected / 4) ** 0.5)
    parents = final.parent[:, 9:, 0][new]
    assert bool(((parents >= 5) & (parents <= 8)).all())  # hung off a resharer, never the silent source


def test_resharer_parents_are_drawn_in_proportion_to_their_weight():
    """Evenly spaced uniforms: each agent is drawn as often as its share of its slice's weight says
    (to within one draw), and never outside its slice or with zero weight."""
    weight = torch.zeros(2, 5, 3)
    weight[0, :, 0] = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0])
    weight[1, :, 2] = torch.tensor([2.0, 0.0, 2.0, 0.0, 4.0])
    weight[0, :, 1] = torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0])
    draws = 400
    u = (torch.arange(draws, dtype=torch.float64) + 0.5) / draws
    for b, c in [(0, 0), (1, 2), (0, 1)]:
        drawn = Cascade._draw_resharer(weight, torch.full((draws,), b), torch.full((draws,), c), u)
        counts = torch.bincount(drawn, minlength=5).double()
        share = weight[b, :, c].double() / weight[b, :, c].sum()
        assert torch.all((counts - draws * share).abs() <= 1.0), (b, c, counts.tolist())


def test_resharer_audience_gradients_match_finite_differences():
    cascade = Cascade([Item(source=0), Item(source=3)], transmissibility=0.2, attention=0.4, audience=30.0,
                      resharer_audience=1.5, resharer_audience_spread=0.7, resharer_item_spread=0.6,
                      feed_half_life_h=0.5)
    checked = assert_cascade_gradients_match_finite_differences(
        cascade, small_graph(12, 3.0, seed=6), lambda run: run["reshares"][-1].sum(), RECORD,
        estimator=relax.RelaxedBernoulli(0.5))
    assert checked == 7  # transmissibility, attention, audience, resharer audience and its two spreads, half-life


def test_resharer_item_spread_is_lognormal_across_items_and_shared_by_agents():
    """log reach = log(A / N) + s_agent z_agent + s_item z_item: across items, at a fixed agent, the
    log reach has SD ``s_item`` and the item effect is the same for every agent (the agent effect
    cancels in differences between items); without the item spread it is constant across items."""
    n, items, audience, agent_spread, item_spread = 50, 4000, 40.0, 0.7, 0.9
    rng = CounterRNG.from_seed([11, 12], 2)
    cascade = Cascade([Item(source=i % n) for i in range(items)], resharer_audience=audience,
                      resharer_audience_spread=agent_spread, resharer_item_spread=item_spread)
    log_reach = cascade.resharer_reach(rng, n, torch.float64).log()  # (B, N, C)
    assert log_reach.shape == (2, n, items)
    across_items = log_reach[:, 0, :]
    # SD of a normal sample's SD is about s / sqrt(2 C): 0.01 here; 5 of those
    assert across_items.std(dim=1).tolist() == pytest.approx([item_spread] * 2, abs=0.05)
    item_effect = log_reach - log_reach[:, :1, :]  # agent effects only: constant across items
    assert torch.allclose(item_effect, item_effect[:, :, :1].expand_as(item_effect), atol=1e-9)
    plain = Cascade([Item(source=i % n) for i in range(items)], resharer_audience=audience,
                    resharer_audience_spread=agent_spread).resharer_reach(rng, n, torch.float64)
    assert plain.shape == (2, n, 1)
    # the item effect is centred: its mean over 4000 items is within 5 standard errors of 0
    centred = (log_reach[:, 0, :] - plain[:, 0, :].log()).mean(dim=1)
    assert centred.abs().max() < 5 * item_spread / items**0.5
    with pytest.raises(ConfigError, match="resharer_audience"):
        Cascade([Item(source=0)], resharer_item_spread=0.5)


def test_sources_mask_marks_every_source_and_is_dropped_on_a_move():
    """The mask is each item's sources (every one of a multi-source item), built once per size and
    device; moving the module clears it, so no mask stays held on a device the module left."""
    cascade = Cascade([Item(source=4), Item(source=(1, 7)), Item(source=4)])
    mask = cascade.sources_mask(10, "cpu")
    expected = torch.zeros(10, 3, dtype=torch.bool)
    expected[4, 0] = expected[1, 1] = expected[7, 1] = expected[4, 2] = True
    assert torch.equal(mask, expected)
    assert cascade.sources_mask(10, "cpu") is mask  # reused, not rebuilt
    cascade.double()
    assert not cascade._sources_masks
    assert torch.equal(cascade.sources_mask(10, "cpu"), expected)
