"""Fused Triton kernels for lpm's hot ops (``neighbor_pull`` without a pair kernel, with smooth
bounded confidence and with attraction-repulsion; ``neighbor_sum``; ``sum_over_followers``),
forward and backward, in :mod:`lpm.kernels.triton.ops` over the kernels of ``_jit``.

:func:`register_available` puts them in the registry for CUDA tensors of float32 and float64 when
Triton imports, a CUDA device is present and ``LPM_FUSED_KERNELS=1`` is set (or ``force=True``);
:mod:`lpm.kernels.dispatch` calls it once at import. They are opt-in because on the first GPU that
ran them (an H200) the default model's step on its power-law graph was 3.5-5.7 times slower fused
than with the plain-torch references: a program walks a hub's whole row (docs/gpu.md).
:func:`fused_ops` gives them directly: compiled, or run by Triton's interpreter on CPU tensors when
``TRITON_INTERPRET=1`` was set before Triton was first imported (Triton decorates its own library
functions for one mode or the other at import), which is how the test suite checks them on
machines without a GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import TYPE_CHECKING, Iterator

import torch

from ..pair import AttractRepel, SmoothBoundedConfidence
from ..registry import register, unregister

if TYPE_CHECKING:
    from .ops import FusedOps

__all__ = ["register_available", "fused_registered", "unregister_fused", "fused_ops", "interpreting", "FUSED_OPS"]

FUSED_OPS: dict[str, tuple[type | None, ...]] = {
    "neighbor_pull": (None, SmoothBoundedConfidence, AttractRepel),
    "neighbor_sum": (None,),
    "sum_over_followers": (None,),
}
"""Each fused op and the pair-kernel classes it is registered for."""

_DTYPES = (torch.float32, torch.float64)


def fused_ops() -> "FusedOps":
    """The fused implementations, with the reference's signatures (see :class:`~lpm.kernels.triton.ops.FusedOps`).

    Raises:
        ModuleNotFoundError: Triton is not installed.
    """
    # Triton is an optional dependency (the test extra, CUDA builds of torch): imported only here.
    from . import _jit
    from .ops import FusedOps

    return FusedOps(_jit)


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter in this process (``TRITON_INTERPRET=1``, set
    before Triton's first import); ``False`` without Triton."""
    if os.environ.get("TRITON_INTERPRET") != "1" or importlib.util.find_spec("triton") is None:
        return False
    import triton.language as tl

    return type(tl.standard.max).__name__ == "InterpretedFunction"


_registered = False
_KEYS = [(op, dtype, pair) for op, pairs in FUSED_OPS.items() for dtype in _DTYPES for pair in pairs]


def register_available(force: bool = False) -> bool:
    """Register the compiled fused ops for ``cuda`` tensors of float32 and float64 if Triton is
    installed, a CUDA device is present, Triton is not in interpreter mode, and either
    ``LPM_FUSED_KERNELS=1`` is set or ``force`` is true. Returns whether they are registered (a
    second call registers nothing again)."""
    global _registered
    if _registered:
        return True
    if (not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
            or importlib.util.find_spec("triton") is None
            or not (force or os.environ.get("LPM_FUSED_KERNELS") == "1")):
        return False
    try:
        fused = fused_ops()
    except ImportError:  # a Triton that does not match this torch: the references serve
        return False
    for op, dtype, pair in _KEYS:
        register(op, getattr(fused, op), device="cuda", dtype=dtype, pair=pair)
    _registered = True
    return True


@contextlib.contextmanager
def fused_registered() -> Iterator[bool]:
    """Inside the block the fused kernels serve CUDA tensors (if they can: yields whether they do);
    afterwards the registry is as before, so a benchmark or a test does not leave them on."""
    before = _registered
    on = register_available(force=True)
    try:
        yield on
    finally:
        if on and not before:
            unregister_fused()


def unregister_fused() -> None:
    """Take the fused kernels out of the registry (the references serve CUDA again)."""
    global _registered
    if _registered:
        for op, dtype, pair in _KEYS:
            unregister(op, device="cuda", dtype=dtype, pair=pair)
    _registered = False
