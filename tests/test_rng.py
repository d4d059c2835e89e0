"""Counter-based random numbers: uniformity, independence, batch- and device-invariance."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from lpm.errors import ConfigError
from lpm.rng import CounterRNG


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_passes_ks_and_is_in_unit_interval(dtype):
    u = CounterRNG.from_seed(0, 3).uniform(7, 1, (50_000,), dtype)
    assert u.dtype == dtype and float(u.min()) >= 0 and float(u.max()) < 1
    for b in range(3):
        assert stats.kstest(u[b].double().numpy(), "uniform").pvalue > 1e-3


def test_streams_steps_scenarios_and_neighbours_are_uncorrelated():
    rng = CounterRNG.from_seed(1, 2)
    draws = [rng.uniform(3, 0, (100_000,))[0], rng.uniform(3, 1, (100_000,))[0],
             rng.uniform(4, 0, (100_000,))[0], rng.uniform(3, 0, (100_000,))[1]]
    corr = torch.corrcoef(torch.stack(draws + [draws[0].roll(1)]))
    off = corr - torch.eye(5)
    assert float(off.abs().max()) < 0.02  # 6 s.e. of a correlation over 1e5 samples is 0.019


def test_draws_depend_only_on_seed_step_stream_agent():
    rng = CounterRNG.from_seed([5, 9, 5], 3)
    u = rng.uniform(2, 0, (100,))
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert torch.equal(rng.select(1).uniform(2, 0, (100,)), u[1:2])
    assert torch.equal(CounterRNG.from_seed([9], 1).uniform(2, 0, (100,)), u[1:2])
    assert torch.equal(rng.uniform(2, 0, (10, 10)).reshape(3, 100), u)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_draw_the_same_numbers():
    cpu = CounterRNG.from_seed(4, 2).uniform(11, 0, (1000,), torch.float64)
    gpu = CounterRNG.from_seed(4, 2, "cuda").uniform(11, 0, (1000,), torch.float64)
    assert torch.equal(cpu, gpu.cpu())


@pytest.mark.parametrize("seed", [[1, 2], torch.tensor([1.0, 2.0, 3.0]), True, "7"])
def test_bad_seeds_raise(seed):
    with pytest.raises(ConfigError, match="seed"):
        CounterRNG.from_seed(seed, 3)
