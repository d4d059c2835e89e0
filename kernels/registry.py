"""The table of implementations of the hot ops, keyed by (op, device type, dtype, pair-kernel type).

Every op has its plain-torch reference (:mod:`lpm.kernels.reference`), which serves any device and
dtype. A fast path (a fused GPU kernel, a CPU fast path) is registered for the keys it handles and
must take the reference's arguments and return what it returns; :func:`lookup` picks it for those
keys and the reference everywhere else. The table is private to :mod:`lpm.kernels`: models never
name an implementation, they call the op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from lpm.errors import ConfigError

from . import reference

__all__ = ["Implementation", "register", "unregister", "lookup", "implementations", "OPS"]

OPS: dict[str, Callable] = {
    "neighbor_pull": reference.neighbor_pull,
    "neighbor_sum": reference.neighbor_sum,
    "neighbor_sum_sparse": reference.neighbor_sum_sparse,
    "neighbor_min": reference.neighbor_min,
    "sum_over_followers": reference.sum_over_followers,
    "gather_rows": reference.gather_rows,
    "take_along_agents": reference.take_along_agents,
    "sample_followee": reference.sample_followee,
    "sample_visible_followee": reference.sample_visible_followee,
    "expand_segments": reference.expand_segments,
}
"""Each op and its reference implementation."""


@dataclass(frozen=True)
class Implementation:
    """One implementation of ``op``; ``device`` ``None`` for the reference (any device), ``dtype``
    ``None`` for any dtype, ``pair`` the pair-kernel class it computes (``None``: no pair kernel)."""

    op: str
    fn: Callable
    device: Optional[str] = None
    dtype: Optional[torch.dtype] = None
    pair: Optional[type] = None

    @property
    def name(self) -> str:
        if self.device is None:
            return f"{self.op}-reference"
        dtype = "any" if self.dtype is None else str(self.dtype).removeprefix("torch.")
        pair = "" if self.pair is None else f"-{self.pair.__name__}"
        return f"{self.op}-{getattr(self.fn, '__name__', 'fn')}-{self.device}-{dtype}{pair}"


_TABLE: dict[tuple[str, str, Optional[torch.dtype], Optional[type]], Callable] = {}


def _key(op: str, device: str, dtype: Optional[torch.dtype], pair: Optional[type]):
    if op not in OPS:
        raise ConfigError(f"Expected an op among {sorted(OPS)} (got {op!r})")
    if not isinstance(device, str) or device == "":
        raise ConfigError(f"Expected a device type such as 'cuda' or 'cpu' (got {device!r})")
    return op, device, dtype, pair


def register(op: str, fn: Callable, *, device: str, dtype: Optional[torch.dtype] = None,
             pair: Optional[type] = None) -> Callable:
    """Register ``fn`` as the implementation of ``op`` on ``device`` (a device type: ``"cuda"``,
    ``"cpu"``), for ``dtype`` (``None``: every dtype) and pair-kernel class ``pair`` (ops without a
    pair kernel: ``None``). ``fn`` takes the reference's arguments. Returns ``fn``.

    Raises:
        ConfigError: an unknown op, or the key already has an implementation.
    """
    key = _key(op, device, dtype, pair)
    if key in _TABLE:
        raise ConfigError(f"Expected one implementation per key (got a second one for {key})")
    _TABLE[key] = fn
    return fn


def unregister(op: str, *, device: str, dtype: Optional[torch.dtype] = None, pair: Optional[type] = None) -> None:
    """Remove the implementation registered under this key.

    Raises:
        ConfigError: nothing is registered under it.
    """
    key = _key(op, device, dtype, pair)
    if _TABLE.pop(key, None) is None:
        raise ConfigError(f"Expected a registered implementation for {key} (got none)")


def lookup(op: str, device: torch.device, dtype: torch.dtype, pair: Optional[type] = None) -> Callable:
    """The implementation of ``op`` for data on ``device`` of ``dtype``: the one registered for this
    dtype, else for any dtype, else the reference."""
    if _TABLE:  # two dict probes per call only once something is registered
        fn = _TABLE.get((op, device.type, dtype, pair)) or _TABLE.get((op, device.type, None, pair))
        if fn is not None:
            return fn
    return OPS[op]


def implementations(op: str) -> list[Implementation]:
    """The reference of ``op`` and every implementation registered for it (what tests run)."""
    if op not in OPS:
        raise ConfigError(f"Expected an op among {sorted(OPS)} (got {op!r})")
    registered = [Implementation(op, fn, device, dtype, pair)
                  for (name, device, dtype, pair), fn in _TABLE.items() if name == op]
    return [Implementation(op, OPS[op])] + registered
