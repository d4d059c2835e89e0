"""The CPU fast path of the hot ops: fused C++/OpenMP loops (``fused.cpp``) with no per-edge
intermediates, registered in :mod:`lpm.kernels.registry` for the CPU in float32 and float64.

Registered when :mod:`lpm.kernels` is imported; the library is compiled on first use and cached
(:mod:`.build`). If it cannot be built, one warning is logged and the reference serves every call.
:func:`disabled` unregisters it for a block (benchmarks compare both paths in one process).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..pair import AttractRepel, SmoothBoundedConfidence
from ..registry import lookup, register, unregister
from .build import build_error, load
from .fast import DTYPES, fused_pull, fused_sum

__all__ = ["KEYS", "register_all", "unregister_all", "is_registered", "disabled", "available", "build_error"]

#: ``(op, fn, dtype, pair)`` of every registration, all on device type ``"cpu"``.
KEYS = tuple(
    [("neighbor_pull", fused_pull, dtype, pair) for dtype in DTYPES
     for pair in (None, SmoothBoundedConfidence, AttractRepel)]
    + [("neighbor_sum", fused_sum, dtype, None) for dtype in DTYPES]
)


def is_registered() -> bool:
    """Whether the fast path is in the registry now."""
    return lookup("neighbor_sum", torch.device("cpu"), DTYPES[0]) is fused_sum


def register_all() -> None:
    """Register every fast-path implementation (a no-op if they are registered)."""
    if not is_registered():
        for op, fn, dtype, pair in KEYS:
            register(op, fn, device="cpu", dtype=dtype, pair=pair)


def unregister_all() -> None:
    """Remove every fast-path implementation (a no-op if none is registered)."""
    if is_registered():
        for op, _, dtype, pair in KEYS:
            unregister(op, device="cpu", dtype=dtype, pair=pair)


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """The reference serves the CPU inside the block; the registrations are restored after it."""
    was = is_registered()
    unregister_all()
    try:
        yield
    finally:
        if was:
            register_all()


def available() -> bool:
    """Whether the compiled library loads (building it now if needed)."""
    return load() is not None


register_all()
