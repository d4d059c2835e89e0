"""The CPU fast path's backward of the second-order emotion update (:mod:`lpm.dynamics.emotion`).

The update ``f = coupling s P / (1 + W) - decay (e - baseline) + gain shock + drive``,
``v' = momentum v + dt f``, ``e' = e + v'`` is a chain of about ten elementwise ops over ``(B, N, d)``;
autograd replays it backward with some fifteen more passes and a saved tensor per op. Here the
forward is that same chain, run by the caller's function (so its values are the same bits), and
the backward is one fused loop (``emotion_backward`` in ``fused.cpp``) that saves only the inputs.
Gradients agree with autograd's to rounding.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..registry import lookup
from .build import load
from .fast import DTYPES, fused_sum

__all__ = ["fused_emotion_update", "EmotionChain"]

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1}

#: ``chain(e, v, pull, weight, coupling, decay, momentum, gain, drive) -> (e', v')``: the plain-torch update.
EmotionChain = Callable[..., tuple[Tensor, Tensor]]


@dataclass(frozen=True, eq=False)
class _Spec:
    chain: EmotionChain
    dt: float
    susceptibility: Tensor  # (N,) or (B, N), contiguous
    batch_stride: int
    baseline: Optional[Tensor]  # (d,) or None
    shock: Optional[Tensor]  # (N, d) or (d,) or None


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


class _EmotionUpdate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, e: Tensor, v: Tensor, pull: Tensor, weight: Tensor, coupling: Tensor, decay: Tensor,
                momentum: Tensor, gain: Optional[Tensor], drive: Optional[Tensor], spec: _Spec):
        ctx.spec = spec
        ctx.drive_shape = None if drive is None else drive.shape
        ctx.gain_shape = None if gain is None else gain.shape
        ctx.save_for_backward(e, v, pull, weight, coupling, decay, momentum)
        return spec.chain(e, v, pull, weight, coupling, decay, momentum, gain, drive)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_e: Tensor, grad_v: Tensor):
        e, v, pull, weight, coupling, decay, momentum = ctx.saved_tensors
        spec = ctx.spec
        need = ctx.needs_input_grad
        grad_e, grad_v = grad_e.contiguous(), grad_v.contiguous()  # kept in locals: the C call reads them
        batch, num_nodes, dim = e.shape
        grad_pull, grad_weight = torch.empty_like(pull), torch.empty_like(weight)
        grad_force = torch.empty_like(e) if need[8] else None
        grad_state = torch.empty_like(e) if need[0] else None
        grad_velocity = torch.empty_like(v) if need[1] else None
        shock = spec.shock
        shock_stride = 0 if shock is None or shock.dim() == 1 else dim
        sums = (ctypes.c_double * 4)()
        status = load().lpm_emotion_backward(
            _DTYPE_CODE[e.dtype], batch, num_nodes, dim, spec.dt, float(coupling), float(decay), float(momentum),
            _ptr(e), _ptr(v), _ptr(pull), _ptr(weight), _ptr(spec.susceptibility), spec.batch_stride,
            _ptr(spec.baseline), _ptr(shock), shock_stride, _ptr(grad_e), _ptr(grad_v), _ptr(grad_pull),
            _ptr(grad_weight), _ptr(grad_force), _ptr(grad_state), _ptr(grad_velocity), sums)
        if status != 0:
            raise RuntimeError(f"Expected lpm's fused emotion backward to accept dtype {e.dtype} (got status {status})")

        def scalar(value: float, shape, wanted: bool) -> Optional[Tensor]:
            return e.new_full(shape, value) if wanted else None

        grad_drive = None if grad_force is None else grad_force.sum_to_size(ctx.drive_shape)
        return (grad_state, grad_velocity, grad_pull if need[2] else None, grad_weight if need[3] else None,
                scalar(sums[0], coupling.shape, need[4]), scalar(sums[1], decay.shape, need[5]),
                scalar(sums[2], momentum.shape, need[6]), scalar(sums[3], ctx.gain_shape, need[7]), grad_drive, None)


def fused_emotion_update(chain: EmotionChain, e: Tensor, v: Tensor, pull: Tensor, weight: Tensor,
                         susceptibility: Tensor, coupling: Tensor, decay: Tensor, momentum: Tensor,
                         gain: Optional[Tensor], shock: Optional[Tensor], baseline: Optional[Tensor],
                         drive: Optional[Tensor], dt: float) -> Optional[tuple[Tensor, Tensor]]:
    """``chain(e, v, pull, weight, coupling, decay, momentum, gain, drive)`` with the fused backward, or
    ``None`` where this path does not apply (the caller then runs ``chain`` under autograd): not the
    CPU, the fast path not registered (:func:`lpm.kernels.cpu.disabled`) or not built, another dtype,
    no gradient wanted, or a gradient wanted for the susceptibility, baseline or shock.

    Shapes:
        e, v, pull: ``(B, N, d)``; weight: ``(B, N, 1)``; susceptibility: ``(B, N)`` or ``(N,)``;
        coupling, decay, momentum, gain: one number each; shock: ``(N, d)`` or ``(d,)``; baseline:
        ``(d,)``; drive: broadcastable to ``(B, N, d)``. Returns ``(e', v')``, both ``(B, N, d)``.
    """
    tensors = [e, v, pull, weight, coupling, decay, momentum] + [t for t in (gain, drive) if t is not None]
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors):
        return None
    if (e.device.type != "cpu" or e.dtype not in DTYPES or e.dim() != 3 or v.shape != e.shape
            or pull.shape != e.shape or weight.shape != e.shape[:2] + (1,)
            or any(t.dtype != e.dtype for t in tensors)
            or any(t is not None and t.requires_grad for t in (susceptibility, shock, baseline))
            or any(t.numel() != 1 for t in (coupling, decay, momentum) + ((gain,) if gain is not None else ()))
            or (gain is None) != (shock is None) or load() is None
            or lookup("neighbor_sum", e.device, e.dtype) is not fused_sum):  # the fast path is set aside
        return None
    batch, num_nodes, dim = e.shape
    if susceptibility.shape not in ((num_nodes,), (1, num_nodes), (batch, num_nodes)):
        return None
    if shock is not None and shock.shape not in ((num_nodes, dim), (dim,)):
        return None
    if baseline is not None and baseline.shape != (dim,):
        return None
    if drive is not None and (drive.dim() > 3 or torch.broadcast_shapes(drive.shape, e.shape) != e.shape):
        return None
    s = susceptibility.to(e.dtype)
    if s.dim() == 2 and s.size(0) == batch and batch > 1 and s.stride(0) != 0:
        s, stride = s.contiguous(), num_nodes
    else:
        s, stride = s.reshape(-1, num_nodes)[0].contiguous(), 0
    spec = _Spec(chain, float(dt), s, stride, None if baseline is None else baseline.to(e.dtype).contiguous(),
                 None if shock is None else shock.to(e.dtype).contiguous())
    return _EmotionUpdate.apply(e.contiguous(), v.contiguous(), pull.contiguous(), weight.contiguous(), coupling,
                                decay, momentum, gain, drive, spec)
