"""A population partitioned over torch.distributed ranks equals the single-process run.

Partitions (balance, cuts), layouts (halo maps agree between ranks, local rows equal global rows),
draws keyed by global agent id, and then whole runs of the default scenario on 1, 2 and 4 gloo ranks
on the CPU against the single-process trajectory, with gradients of every model parameter.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import lpm
from lpm.distributed import (AgentRNG, PartitionedGraph, block_partition, gather_agents, label_propagation_partition,
                             local_state, localize_model, metis_available, metis_partition, partition,
                             partition_stats, plan_capacity, rank_layout, simulate_partitioned, sync_gradients)
from lpm.errors import ConfigError
from lpm.rng import CounterRNG

AGENTS, BATCH, STEPS, SEED = 500, 2, 24, 3
# float32 sums over a row add the same terms in the same order on every rank; what may differ is the
# vectorised vs scalar evaluation of sigmoid/exp at a row's position in the array (ulps), carried
# through the steps: the stated tolerance on states and observables, relative on gradients.
STATE_ATOL = 1e-5
GRAD_RTOL = 1e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scenario():
    from lpm.scenarios.default import Config, ShockConfig, scenario

    # the breaking-news shock early enough to fall inside the short test run
    return scenario(Config(shock=ShockConfig(start_h=2.0, hours=3.0)))


def _setup(agents: int = AGENTS):
    sc = _scenario()
    graph = sc.build_graph(agents, SEED, torch.device("cpu"))
    state = sc.build_population(graph, BATCH, SEED)
    model = sc.build_model(graph, sc.dt, SEED)
    return graph, state, model


def _loss(opinion: torch.Tensor, emotion: torch.Tensor, activity: torch.Tensor, total: int) -> torch.Tensor:
    """A loss from sums over agents (so it splits over ranks): final mean opinion, negative share, trace."""
    negative = torch.sigmoid((-emotion[..., 0] - 0.1) / 0.02).sum(1)
    return ((opinion.sum((1, 2)) + negative + activity.sum(1)) / total).sum()


def _reference(graph, state, model):
    traj = lpm.simulate(model, state, graph, steps=STEPS, seed=SEED)
    final = traj.final
    loss = _loss(final.opinion, final.emotion, final.activity, graph.num_nodes)
    model.zero_grad()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return traj, final, loss.detach(), grads


def _worker(rank: int, world: int, port: int, method: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        graph, state, model = _setup()
        owner = partition(graph, world, method=method)
        part = PartitionedGraph(rank_layout(graph, owner, rank, world))
        local_model = localize_model(model, part.agents, graph.num_nodes)
        traj = simulate_partitioned(local_model, local_state(state, part.agents), part, steps=STEPS, seed=SEED)
        final = traj.final
        loss = all_reduce_loss(final, graph.num_nodes, part)
        loss.backward()
        sync_gradients(local_model)
        gathered = {name: gather_agents(getattr(final, name), part) for name in ("opinion", "emotion", "activity")}
        if rank == 0:
            ref_traj, ref_final, ref_loss, ref_grads = _reference(graph, state, model)
            grads = {name: p.grad for name, p in local_model.named_parameters() if p.grad is not None}
            torch.save({
                "state_diff": max(float((gathered[k] - getattr(ref_final, k).detach()).abs().max()) for k in gathered),
                "posts": traj["posts"], "ref_posts": ref_traj["posts"],
                "opinion_mean": traj["opinion_mean"], "ref_opinion_mean": ref_traj["opinion_mean"],
                "loss": loss.detach(), "ref_loss": ref_loss,
                "grads": grads, "ref_grads": ref_grads,
                "halo": part.layout.halo.numel(), "bytes_sent": part.bytes_sent,
            }, out)
    finally:
        dist.destroy_process_group()


def all_reduce_loss(final, total, part):
    from lpm.distributed import all_reduce_sum

    negative = torch.sigmoid((-final.emotion[..., 0] - 0.1) / 0.02).sum(1)
    sums = all_reduce_sum(torch.stack([final.opinion.sum((1, 2)), negative, final.activity.sum(1)]), part.group)
    return (sums.sum(0) / total).sum()


@pytest.mark.parametrize("world,method", [(2, "label_propagation"), (4, "auto")])
def test_partitioned_run_equals_single_process(tmp_path: Path, world: int, method: str):
    out = str(tmp_path / "result.pt")
    mp.spawn(_worker, args=(world, _free_port(), method, out), nprocs=world, join=True)
    r = torch.load(out, weights_only=False)
    assert r["halo"] > 0 and r["bytes_sent"] > 0  # the ranks did exchange states
    assert r["state_diff"] <= STATE_ATOL
    assert torch.equal(r["posts"], r["ref_posts"])  # every post drawn the same, step by step
    torch.testing.assert_close(r["opinion_mean"], r["ref_opinion_mean"], atol=STATE_ATOL, rtol=0)
    torch.testing.assert_close(r["loss"], r["ref_loss"], atol=STATE_ATOL, rtol=0)
    assert set(r["grads"]) == set(r["ref_grads"]) and len(r["grads"]) >= 5
    for name, grad in r["ref_grads"].items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(r["grads"][name], grad, rtol=GRAD_RTOL, atol=1e-7 * float(grad.abs().max()),
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.fixture
def one_rank():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_one_rank_is_bit_for_bit_the_single_process_run(one_rank):
    graph, state, model = _setup(300)
    part = PartitionedGraph(rank_layout(graph, torch.zeros(graph.num_nodes, dtype=torch.int64), 0, 1))
    traj = simulate_partitioned(localize_model(model, part.agents, graph.num_nodes), local_state(state, part.agents),
                                part, steps=STEPS, seed=SEED)
    ref = lpm.simulate(model, state, graph, steps=STEPS, seed=SEED)
    for name in ("opinion", "emotion", "emotion_velocity", "activity"):
        assert torch.equal(getattr(traj.final, name), getattr(ref.final, name)), name
    assert torch.equal(traj["posts"], ref["posts"])


def test_ops_without_meaning_across_ranks_raise(one_rank):
    graph = lpm.Graph.holme_kim(50, 2, 0.3, seed=0)
    part = PartitionedGraph(rank_layout(graph, torch.zeros(50, dtype=torch.int64), 0, 1))
    with pytest.raises(ConfigError, match="partitioned"):
        lpm.kernels.sample_followee(part, torch.rand(1, 50))
    with pytest.raises(ConfigError, match="rank 0 of 1"):
        PartitionedGraph(rank_layout(graph, torch.arange(50) % 2, 1, 2))


def test_halo_exchange_and_reduce_are_adjoint(one_rank):
    """<extend(x), y> = <x, reduce(y)>: what sum_over_followers sends back is the transpose of the halo."""
    graph = lpm.Graph.holme_kim(60, 3, 0.3, seed=1)
    x = torch.randn(2, 60, 3, dtype=torch.float64)
    values = torch.randn(2, graph.num_edges, 3, dtype=torch.float64)
    part = PartitionedGraph(rank_layout(graph, torch.zeros(60, dtype=torch.int64), 0, 1))
    torch.testing.assert_close(lpm.kernels.sum_over_followers(part, values),
                               lpm.kernels.sum_over_followers(graph, values))
    torch.testing.assert_close(lpm.kernels.gather_followees(part, x), lpm.kernels.gather_followees(graph, x))


# ---------------------------------------------------------------------------------------- partitions
def test_label_propagation_is_balanced_and_finds_planted_communities():
    graph, _ = lpm.Graph.sbm_homophily(400, 4, mean_degree=8.0, homophily=0.95, seed=0)
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(0))
    graph = graph.permute(perm)  # ids no longer reveal the blocks
    owner = label_propagation_partition(graph, 4, imbalance=0.05)
    stats, blocks = partition_stats(graph, owner, 4), partition_stats(graph, block_partition(graph, 4), 4)
    assert torch.bincount(owner, minlength=4).max() <= 1.05 * 100 + 1
    assert stats.cut_fraction < 0.5 * blocks.cut_fraction
    assert stats.halo_fraction < blocks.halo_fraction


@pytest.mark.skipif(not metis_available(), reason="pymetis not installed (extra 'distributed')")
def test_metis_cuts_fewer_edges_than_contiguous_blocks():
    graph = lpm.Graph.holme_kim(2_000, 3, 0.3, seed=0)
    owner = metis_partition(graph, 4)
    assert sorted(owner.unique().tolist()) == [0, 1, 2, 3]
    stats = partition_stats(graph, owner, 4)
    assert stats.imbalance < 1.1
    assert stats.cut_fraction < partition_stats(graph, block_partition(graph, 4), 4).cut_fraction


def test_partition_checks_its_inputs():
    graph = lpm.Graph.holme_kim(30, 2, 0.3, seed=0)
    with pytest.raises(ConfigError, match="method"):
        partition(graph, 2, method="spectral")
    with pytest.raises(ConfigError, match="parts"):
        partition(graph, 0)
    with pytest.raises(ConfigError, match="owner"):
        partition_stats(graph, torch.zeros(29, dtype=torch.int64))


def test_layouts_agree_between_ranks():
    graph = lpm.Graph.holme_kim(300, 3, 0.3, seed=2)
    parts = 3
    owner = label_propagation_partition(graph, parts)
    layouts = [rank_layout(graph, owner, r, parts) for r in range(parts)]
    assert torch.equal(torch.sort(torch.cat([l.agents for l in layouts])).values, torch.arange(300))
    for r, layout in enumerate(layouts):
        ids = torch.cat([layout.agents, layout.halo])
        n = layout.num_local
        # local rows are the global rows, in the same order, through the local -> global id map
        for k in (0, n // 2, n - 1):
            g = int(layout.agents[k])
            lo, hi = int(layout.local.rowptr[k]), int(layout.local.rowptr[k + 1])
            assert torch.equal(ids[layout.local.col[lo:hi].long()], graph.col[graph.rowptr[g]:graph.rowptr[g + 1]].long())
        assert int(layout.local.rowptr[-1]) == int(layout.local.rowptr[n])  # halo rows are empty
        # what each rank sends r is exactly r's halo block from it
        offsets = [0] + torch.cumsum(torch.tensor(layout.recv_counts), 0).tolist()
        for s, other in enumerate(layouts):
            start = sum(other.send_counts[:r])
            sent = other.agents[other.send_index[start:start + other.send_counts[r]]]
            assert torch.equal(sent, layout.halo[offsets[s]:offsets[s + 1]])
            assert other.send_counts[r] == layout.recv_counts[s]


def test_agent_rng_draws_the_single_process_numbers():
    rng = CounterRNG.from_seed(7, 3)
    agents = torch.tensor([5, 0, 17, 9])
    local = AgentRNG(rng.seeds, agents)
    torch.testing.assert_close(local.uniform(4, 1, (4,)), rng.uniform(4, 1, (20,))[:, agents], rtol=0, atol=0)
    full = rng.uniform(2, 6, (20, 3), torch.float64)
    torch.testing.assert_close(local.uniform(2, 6, (4, 3), torch.float64), full[:, agents], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="per-agent"):
        local.uniform(0, 0, (5,))
    with pytest.raises(ConfigError, match="per-agent"):
        local.uniform_at(0, 0, (4,), torch.zeros(1, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))


# ---------------------------------------------------------------------------------------- capacity
def test_capacity_plan_fits_and_scales():
    from lpm.distributed.capacity import BYTES_PER_AGENT, BYTES_PER_EDGE, STATE_BYTES, halo_fraction

    small, large = plan_capacity(1e8, "h200"), plan_capacity(1e9, "h200")
    # one device: the state, the graph and a step's peak, nothing exchanged
    per_agent = STATE_BYTES["agent"] + STATE_BYTES["agent_scenario"] + BYTES_PER_AGENT["step"]
    per_edge = STATE_BYTES["edge"] + BYTES_PER_EDGE["step"]
    assert small.devices == 1 and small.comm_per_step_gb == 0
    assert small.memory_per_device_gb == pytest.approx((1e8 * per_agent + 1e9 * per_edge) / 1e9)
    assert large.devices > small.devices
    fit = plan_capacity(1e9, "h200", fit=True, steps_kept=4)
    for plan in (small, large, fit, plan_capacity(1e9, "h100")):
        assert plan.memory_per_device_gb <= 0.9 * {"h100": 80, "h200": 141}[plan.device]
        assert plan.halo_fraction == halo_fraction(plan.devices)
    for plan in (large, fit, plan_capacity(1e9, "h100")):
        assert plan.comm_per_step_gb == pytest.approx(plan.halo_fraction * 1e9 * 24 * (2 if plan.fit else 1) / 1e9)
        assert plan.comm_ms > 0
    assert plan_capacity(1e9, "h100").devices > large.devices  # less memory per device
    assert fit.devices > large.devices
    assert halo_fraction(2) < halo_fraction(16) <= halo_fraction(1024, edges_per_agent=10.0) <= 10.0
    with pytest.raises(ConfigError, match="device"):
        plan_capacity(1e8, "tpu")


def test_lpm_plan_prints_the_table(capsys):
    from lpm.cli import main

    assert main(["plan", "--agents", "1e9", "--device", "h200"]) == 0
    out = capsys.readouterr().out
    plan = plan_capacity(1e9, "h200")
    row = next(line for line in out.splitlines() if line.split()[:2] == ["1e+09", "h200"])
    assert row.split()[2] == str(plan.devices) and f"{plan.memory_per_device_gb:.1f}" in row
    assert "assumptions:" in out
