"""simulate(): determinism, invariances, gradients through time, checkpointing, save/resume, errors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import lpm
from lpm import observables, relax
from lpm.dynamics import BoundedConfidence, Deffuant, EmotionContagion, Hawkes, Shock
from lpm.errors import ConfigError, NumericalError, StateError
from lpm.graph import Graph
from lpm.testing import small_graph
from tests.helpers import assert_gradients_match_finite_differences, make_state


def full_model(opinion=None, dtype=torch.float64) -> lpm.Model:
    return lpm.Model(
        opinion=opinion or BoundedConfidence(eps=0.5, rate=0.6, tau=0.1),
        emotion=EmotionContagion(0.8, 0.2, order=2, shocks=[Shock(1.0, 2.0, [-0.5, 0.5])]),
        activity=Hawkes(mu=0.6, alpha=0.8, beta=1.5, rhythm_amplitude=0.4),
        dt=0.25,
    ).to(dtype)


def scalar_loss(traj: lpm.Trajectory) -> torch.Tensor:
    return sum(v.sum() for v in traj.values.values())


def test_same_seed_same_trajectory_and_different_seed_differs(device):
    graph = small_graph(40, 3.0, seed=0).to(device)
    state = make_state(40, batch=3, seed=0, device=device)
    model = full_model(Deffuant(0.5, 0.5)).to(device)
    a = lpm.simulate(model, state, graph, steps=30, seed=7)
    b = lpm.simulate(model, state, graph, steps=30, seed=7)
    c = lpm.simulate(model, state, graph, steps=30, seed=8)
    for name in a.values:
        assert torch.equal(a[name], b[name])
    assert not torch.equal(a["posts"], c["posts"])
    assert a["posts"].shape == (31, 3)


def test_batch_equals_single_runs(device):
    graph = small_graph(40, 3.0, seed=1).to(device)
    state = make_state(40, batch=4, seed=1, device=device)
    model = full_model(Deffuant(0.5, 0.5)).to(device)
    seeds = [11, 12, 11, 13]  # scenarios 0 and 2 share their draws
    batch = lpm.simulate(model, state, graph, steps=25, seed=seeds)
    for b, seed in enumerate(seeds):
        single = lpm.simulate(model, state.select(b), graph, steps=25, seed=[seed])
        for name in batch.values:
            torch.testing.assert_close(batch[name][:, b : b + 1], single[name], atol=1e-12, rtol=1e-12)


def test_generator_gives_explicit_reproducible_seeds():
    graph = small_graph(30, 3.0, seed=2)
    state = make_state(30, batch=2, seed=2)
    model = full_model()
    a = lpm.simulate(model, state, graph, steps=10, generator=torch.Generator().manual_seed(3))
    b = lpm.simulate(model, state, graph, steps=10, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["posts"], b["posts"])


def test_permuting_agents_permutes_the_run():
    """Without random draws (no activity, smooth HK), relabelling agents changes nothing observable."""
    graph = small_graph(40, 3.0, seed=3)
    state = make_state(40, batch=2, seed=3)
    model = lpm.Model(opinion=BoundedConfidence(0.5, 0.5, tau=0.1), emotion=EmotionContagion(order=2)).double()
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    a = lpm.simulate(model, state, graph, steps=20, seed=0)
    b = lpm.simulate(model, state.permute(perm), graph.permute(perm), steps=20, seed=0)
    for name in a.values:
        torch.testing.assert_close(a[name], b[name], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(b.final.opinion, a.final.opinion.index_select(1, torch.argsort(perm)))


def test_csr_and_shuffled_duplicated_edge_list_agree():
    graph = small_graph(40, 3.0, seed=4)
    edges = graph.edge_index
    order = torch.randperm(edges.size(1), generator=torch.Generator().manual_seed(1))
    shuffled = torch.cat([edges[:, order], edges[:, order[:10]]], 1)  # shuffled, with repeats
    rebuilt = Graph.from_edge_index(shuffled, 40)
    assert torch.equal(rebuilt.rowptr, graph.rowptr) and torch.equal(rebuilt.col, graph.col)
    state = make_state(40, seed=4)
    model = full_model()
    a = lpm.simulate(model, state, graph, steps=15, seed=0)
    b = lpm.simulate(model, state, rebuilt, steps=15, seed=0)
    for name in a.values:
        assert torch.equal(a[name], b[name])


def test_finite_differences_through_20_steps_reach_every_parameter():
    """d(recorded observables)/d(raw parameter), autograd vs central differences, every parameter."""
    graph = small_graph(25, 3.0, seed=5, weighted=True)
    state = make_state(25, batch=2, seed=5)
    model = full_model()
    estimator = relax.RelaxedBernoulli(0.5)

    def loss() -> torch.Tensor:
        return scalar_loss(lpm.simulate(model, state, graph, steps=20, seed=[1, 2], estimator=estimator))

    assert assert_gradients_match_finite_differences(model, loss) == len(list(model.parameters()))


def test_gradcheck_through_simulate():
    graph = small_graph(8, 2.0, seed=6)
    state = make_state(8, batch=1, seed=6)

    class Run(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = full_model()

        def forward(self) -> torch.Tensor:
            traj = lpm.simulate(self.model, state, graph, steps=6, seed=0, estimator=relax.RelaxedBernoulli(0.7))
            return torch.cat([v.reshape(-1) for v in traj.values.values()])

    run = Run()
    names = [n for n, _ in run.named_parameters()]
    values = tuple(p.detach().clone().requires_grad_() for p in run.parameters())
    fn = lambda *params: torch.func.functional_call(run, dict(zip(names, params)), ())  # noqa: E731
    assert torch.autograd.gradcheck(fn, values, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("estimator", [relax.StraightThrough(), relax.RelaxedBernoulli(0.5), relax.ScoreFunction()])
def test_checkpointed_gradients_equal_plain_gradients(estimator):
    graph = small_graph(30, 3.0, seed=7)
    state = make_state(30, batch=2, seed=7)
    model = full_model(Deffuant(0.5, 0.5, tau=0.1))
    grads = []
    for every in (None, 4):
        model.zero_grad()
        traj = lpm.simulate(model, state, graph, steps=17, seed=3, estimator=estimator, checkpoint_every=every)
        scalar_loss(traj).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-10, rtol=1e-8)


def test_score_function_gradient_of_expected_posts():
    """One step, activity only: d E[posts] / d raw_mu = sum_i dp_i / d raw_mu, estimated by DiCE."""
    n, batch = 20, 20000
    graph = small_graph(n, 3.0, seed=8)
    state = make_state(n, batch=1, seed=8).expand_batch(batch)
    model = lpm.Model(activity=Hawkes(mu=0.8, alpha=0.5, beta=1.0, rhythm_amplitude=None), dt=0.5).double()
    traj = lpm.simulate(model, state, graph, steps=1, seed=0, estimator=relax.ScoreFunction(),
                        record={"posts": observables.posts})
    traj["posts"][1].mean().backward()
    estimate = float(model.activity.raw_mu.grad)
    model.zero_grad()
    rate = model.activity.intensity(state.select(0), graph, 0.0)
    (-torch.expm1(-rate * model.dt)).sum().backward()
    exact = float(model.activity.raw_mu.grad)
    # s.e. of the DiCE mean over 20k scenarios is ~2% of the exact value here; allow ~5 s.e.
    assert abs(estimate / exact - 1) < 0.1, (estimate, exact)


def test_save_and_resume_gives_the_same_trajectory(tmp_path):
    graph = small_graph(30, 3.0, seed=9)
    state = make_state(30, batch=2, seed=9)
    model = full_model(Deffuant(0.5, 0.5))
    reference = lpm.simulate(model, state, graph, steps=20, seed=5)

    calls = {"n": 0}

    def crashing_posts(s, e):
        calls["n"] += 1
        if calls["n"] == 14:
            raise RuntimeError("simulated crash")
        return observables.posts(s, e)

    record = dict(observables.DEFAULT, posts=crashing_posts)
    path = tmp_path / "run.pt"
    with torch.no_grad(), pytest.raises(RuntimeError, match="simulated crash"):
        lpm.simulate(model, state, graph, steps=20, seed=5, record=record, save_path=path, save_every=5)
    assert torch.load(path, weights_only=True)["step"] == 10
    with torch.no_grad():
        resumed = lpm.simulate(model, state, graph, steps=20, seed=5, save_path=path, save_every=5, resume=True)
    for name in reference.values:
        torch.testing.assert_close(resumed[name], reference[name].detach(), atol=0, rtol=0)
    assert not list(tmp_path.glob("*.tmp")), "temporary files must not be left behind"


def test_resume_refuses_other_seeds(tmp_path):
    graph, state, model = small_graph(20, seed=0), make_state(20, seed=0), full_model()
    path = tmp_path / "run.pt"
    with torch.no_grad():
        lpm.simulate(model, state, graph, steps=4, seed=1, save_path=path, save_every=2)
        with pytest.raises(ConfigError, match="same seeds"):
            lpm.simulate(model, state, graph, steps=8, seed=2, save_path=path, save_every=2, resume=True)


def test_nan_guard_at_save_points(tmp_path):
    graph, state = small_graph(20, seed=0), make_state(20, seed=0)
    unstable = lpm.Model(emotion=EmotionContagion(decay=1e3), dt=1.0).double()  # multiplier -999 per step
    with torch.no_grad(), pytest.raises(NumericalError, match="finite 'emotion'"):
        lpm.simulate(unstable, state, graph, steps=200, seed=0, save_path=tmp_path / "x.pt", save_every=10)


def test_trajectory_parquet_round_trip(tmp_path):
    graph, state = small_graph(20, seed=0), make_state(20, batch=2, topics=3, seed=0)
    traj = lpm.simulate(full_model(), state, graph, steps=5, seed=0)
    path = traj.to_parquet(tmp_path / "sub" / "obs.parquet")
    frame = pd.read_parquet(path)
    assert len(frame) == 2 * 6
    assert {"scenario", "step", "time_h", "polarization", "opinion_mean[2]", "posts"} <= set(frame.columns)
    row = frame[(frame.scenario == 1) & (frame.step == 3)].iloc[0]
    assert abs(row["opinion_mean[2]"] - float(traj["opinion_mean"][3, 1, 2].detach())) < 1e-12
    assert abs(row["time_h"] - 0.75) < 1e-12


def test_polarization_closed_forms():
    x = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64).view(1, 4, 1)
    state = lpm.PopulationState.create(x, torch.zeros(1, 4, 2, dtype=torch.float64))
    # ordered pairs: 8 of 16 differ by 2 -> E|xi - xj| = 1
    assert float(observables.polarization(state, lpm.StepEvents())) == pytest.approx(1.0)
    y = torch.rand(1, 50, 1, dtype=torch.float64) * 2 - 1
    s = lpm.PopulationState.create(y, torch.zeros(1, 50, 2, dtype=torch.float64))
    brute = (y[0, :, 0][:, None] - y[0, :, 0][None, :]).abs().mean()
    assert float(observables.polarization(s, lpm.StepEvents())) == pytest.approx(float(brute), rel=1e-12)


# ---------------------------------------------------------------------- bad input
def test_simulate_rejects_bad_arguments():
    graph, state, model = small_graph(20, seed=0), make_state(20, seed=0), full_model()
    with pytest.raises(ConfigError, match="non-negative int"):
        lpm.simulate(model, state, graph, steps=-1, seed=0)
    with pytest.raises(ConfigError, match="exactly one of"):
        lpm.simulate(model, state, graph, steps=1)
    with pytest.raises(ConfigError, match="exactly one of"):
        lpm.simulate(model, state, graph, steps=1, seed=0, generator=torch.Generator())
    with pytest.raises(ConfigError, match="2 integer seeds"):
        lpm.simulate(model, state, graph, steps=1, seed=[1, 2, 3])
    with pytest.raises(StateError, match="30 agents"):
        lpm.simulate(model, state, small_graph(30, seed=0), steps=1, seed=0)
    with pytest.raises(ConfigError, match="dtype"):
        lpm.simulate(full_model(dtype=torch.float32), state, graph, steps=1, seed=0)
    with pytest.raises(ConfigError, match="save_path"):
        lpm.simulate(model, state, graph, steps=1, seed=0, save_every=2)
    with pytest.raises(ConfigError, match="checkpoint_every"):
        lpm.simulate(model, state, graph, steps=1, seed=0, checkpoint_every=0)
    with pytest.raises(ConfigError, match="lpm.Model"):
        lpm.simulate(BoundedConfidence(), state, graph, steps=1, seed=0)
    wrong_shock = lpm.Model(emotion=EmotionContagion(shocks=[Shock(0, 1, [1.0, 2.0, 3.0])])).double()
    with pytest.raises(StateError, match="impulse of length 2"):  # a component's check of the state
        lpm.simulate(wrong_shock, state, graph, steps=1, seed=0)
    wrong_baseline = lpm.Model(emotion=EmotionContagion(baseline=[0.0])).double()
    with pytest.raises(StateError, match="baseline of length 2"):  # a component's check of the state
        lpm.simulate(wrong_baseline, state, graph, steps=1, seed=0)
    with pytest.raises(ConfigError, match="at least one of"):
        lpm.Model()
    with pytest.raises(ConfigError, match="dt"):
        lpm.Model(opinion=BoundedConfidence(), dt=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_simulate_rejects_graph_on_other_device():
    graph, state = small_graph(20, seed=0).to("cuda"), make_state(20, seed=0)
    with pytest.raises(StateError, match="one device"):
        lpm.simulate(full_model(), state, graph, steps=1, seed=0)
