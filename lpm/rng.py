"""Counter-based random numbers: ``u = hash(seed_b, step, stream, i)``.

Every random draw of a simulation is a pure function of the scenario's seed, the step index, a
stream id (which part of the model draws it) and the agent index, hashed with the SplitMix64
finaliser (Steele, Lea & Flood 2014). Consequences the rest of lpm relies on:

* a batch of B scenarios draws exactly what B single runs with the same seeds draw, so batching
  changes nothing but speed;
* scenarios given the same seed share every draw: common random numbers across counterfactual arms;
* replaying steps (gradient checkpointing, resuming from a snapshot) needs no generator state;
* CPU and GPU draw the same numbers.

Randomness stays explicit: seeds are passed in, nothing is seeded globally.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from lpm.errors import ConfigError

__all__ = ["CounterRNG", "STREAM_ACTIVITY", "STREAM_OPINION"]

STREAM_ACTIVITY = 0
STREAM_OPINION = 1
STREAM_CASCADE_RESHARE = 4
STREAM_CASCADE_PARENT = 5
STREAM_CASCADE_AUDIENCE = 6
STREAM_CASCADE_ATTENTION = 7
STREAM_CASCADE_BROADCAST = 8
STREAM_CASCADE_RESHARER_AUDIENCE = 9
STREAM_CASCADE_RESHARER_PARENT = 10
STREAM_CASCADE_RESHARER_ITEM = 11
STREAM_CASCADE_FEED_ITEM = 12
STREAM_CASCADE_ATTACH = 13

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB
_STEP_KEY = 0xD1B54A32D192ED03
_STREAM_KEY = 0x8CB92BA72F3D8DD7
#: Seeds are 64-bit signed integers; an int outside this range would alias one inside (2**64 is 0).
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


def _signed(value: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``value``."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(z: Tensor) -> Tensor:
    """SplitMix64 finaliser on int64 tensors (multiplication wraps modulo 2**64)."""
    z = (z ^ _shr(z, 30)) * _signed(_MUL1)
    z = (z ^ _shr(z, 27)) * _signed(_MUL2)
    return z ^ _shr(z, 31)


def _mix_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK64
    return z ^ (z >> 31)


@dataclass(frozen=True, eq=False)
class CounterRNG:
    """Per-scenario seeds and the draws derived from them.

    Shapes:
        seeds: ``(B,)`` int64, one seed per scenario, on the simulation's device.
    """

    seeds: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.seeds, Tensor) or self.seeds.dim() != 1 or self.seeds.dtype != torch.int64:
            found = f"{self.seeds.dtype}, shape {tuple(self.seeds.shape)}" if isinstance(self.seeds, Tensor) else type(self.seeds).__name__
            raise ConfigError(f"Expected seeds as a (B,) int64 tensor (got {found})")

    @classmethod
    def from_seed(cls, seed: int | Sequence[int] | Tensor, batch: int,
                  device: torch.device | str = "cpu") -> "CounterRNG":
        """Seeds for ``batch`` scenarios.

        An int ``s`` gives scenario ``b`` the seed ``hash(s, b)`` (independent replicates); a
        sequence or ``(B,)`` tensor gives the seeds explicitly (repeat a seed to share draws).
        Integers of any kind (``int``, ``numpy.int64``, a 0-dim integer tensor) are accepted, in
        ``[SEED_MIN, SEED_MAX]`` (int64): a larger seed would silently give another seed's draws.

        Raises:
            ConfigError: a seed that is not an integer, or outside the int64 range; ``batch`` < 1.
        """
        if isinstance(batch, bool) or not isinstance(batch, numbers.Integral) or batch < 1:
            raise ConfigError(f"Expected batch to be an int >= 1 (got {batch!r})")
        if isinstance(seed, float):  # named as given: as a tensor it would read as "torch.float32, shape ()"
            raise ConfigError(f"Expected an int seed or a sequence of {batch} seeds (got float {seed!r})")
        if isinstance(seed, (bool, numbers.Integral)) or (isinstance(seed, Tensor) and seed.dim() == 0):
            if isinstance(seed, bool) or (isinstance(seed, Tensor) and (seed.dtype == torch.bool or seed.dtype.is_floating_point or seed.is_complex())):
                raise ConfigError(f"Expected an int seed or a sequence of {batch} seeds (got {seed!r})")
            seed = int(seed)
            if not SEED_MIN <= seed <= SEED_MAX:
                raise ConfigError(f"Expected a seed in the int64 range [-2**63, 2**63 - 1] (got {seed})")
            seeds = [_signed(_mix_int(_mix_int(seed) + b * _GOLDEN)) for b in range(batch)]
            return cls(torch.tensor(seeds, dtype=torch.int64, device=device))
        try:
            seeds_t = torch.as_tensor(seed, device=device)
        except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
            raise ConfigError(f"Expected an int seed or {batch} integer seeds in the int64 range (got {seed!r})") from None
        if seeds_t.dtype.is_floating_point or seeds_t.dtype == torch.bool or seeds_t.is_complex() \
                or seeds_t.dim() != 1 or seeds_t.numel() != batch:
            raise ConfigError(
                f"Expected an int seed or {batch} integer seeds, one per scenario "
                f"(got {seeds_t.dtype}, shape {tuple(seeds_t.shape)})"
            )
        return cls(seeds_t.to(torch.int64))

    def uniform(self, step: int, stream: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
        """Uniform draws in ``[0, 1)`` of shape ``(B, *shape)`` for ``(step, stream)``.

        float32 draws use the top 24 bits of the hash and float64 the top 53, so every value is
        exactly representable and strictly below 1.
        """
        bits = self._hash(step, stream, shape).reshape(self.seeds.numel(), -1)
        if dtype == torch.float64:
            u = _shr(bits, 11).to(torch.float64) * (2.0**-53)
        else:
            u = (_shr(bits, 40).to(torch.float32) * (2.0**-24)).to(dtype)
        return u.reshape(self.seeds.numel(), *shape)

    def uniform_at(self, step: int, stream: int, shape: Sequence[int], batch_index: Tensor, flat_index: Tensor) -> Tensor:
        """float64 ``uniform(step, stream, shape)[b, ...]`` at given entries only, without drawing the rest.

        Args:
            batch_index: ``(K,)`` scenario of each entry.
            flat_index: ``(K,)`` row-major index of each entry within ``shape``.
        """
        key = _signed(_mix_int(step * _STEP_KEY + stream * _STREAM_KEY + _GOLDEN))
        base = _mix(self.seeds ^ key)  # (B,)
        bits = _mix(base[batch_index] + flat_index.to(torch.int64) * _signed(_GOLDEN))
        return _shr(bits, 11).to(torch.float64) * (2.0**-53)

    def bits(self, step: int, stream: int, shape: Sequence[int]) -> Tensor:
        """Non-negative 63-bit random integers (int64) of shape ``(B, *shape)`` for ``(step, stream)``."""
        return _shr(self._hash(step, stream, shape), 1)

    def _hash(self, step: int, stream: int, shape: Sequence[int]) -> Tensor:
        count = 1
        for size in shape:
            count *= int(size)
        index = torch.arange(count, device=self.seeds.device, dtype=torch.int64)
        return self._hash_at(step, stream, index).reshape(self.seeds.numel(), *shape)

    def _hash_at(self, step: int, stream: int, index: Tensor) -> Tensor:
        """``(B, K)`` hashes of the row-major entries ``index (K,)`` of every scenario's draw; a
        partitioned run (:mod:`lpm.distributed`) draws its agents' entries by their global index."""
        key = _signed(_mix_int(step * _STEP_KEY + stream * _STREAM_KEY + _GOLDEN))
        base = _mix(self.seeds ^ key)  # (B,)
        return _mix(base[:, None] + (index * _signed(_GOLDEN))[None, :])

    def select(self, index: int | slice | Tensor) -> "CounterRNG":
        """The seeds of some scenarios (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return CounterRNG(self.seeds[index])
