"""Every fused kernel's arguments pass through compiled Triton's launch binder.

Compiled Triton (not its interpreter) binds a launch's arguments in a generated function whose own
locals include ``params``, ``specialization`` and ``options``. A kernel argument with one of those
names is replaced by the binder's dict, so the launch fails on a GPU ("failed to specialize argument
of type: dict") while every interpreter test on the CPU passes. That happened on the first H200 run.
This test builds the real binder of each kernel, without a GPU, and binds distinct values.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

_BIND_EVERY_KERNEL = textwrap.dedent("""
    import sys
    import triton
    try:  # Triton's own (private) binder factory; a Triton without it is reported, not failed
        from triton.runtime.jit import create_function_from_signature
    except ImportError as err:
        print("no binder factory:", err)
        sys.exit(3)
    from lpm.kernels.triton import _jit

    kernels = {name: fn for name, fn in vars(_jit).items() if isinstance(fn, triton.runtime.jit.JITFunction)
               and not name.startswith("_")}
    assert len(kernels) >= 6, sorted(kernels)
    for name, fn in kernels.items():
        try:
            binder = create_function_from_signature(fn.signature, fn.params, None)  # ints need no backend
        except (AttributeError, TypeError) as err:  # another Triton's internals, not a kernel's fault
            print("binder factory changed:", err)
            sys.exit(3)
        values = [1000 + k for k in range(len(fn.arg_names))]
        try:
            bound, specialization, _ = binder(*values)
        except TypeError as err:
            raise SystemExit(f"{name}: the binder cannot take its arguments {fn.arg_names}: {err}")
        if list(bound.values()) != values or len(specialization) != len(values):
            raise SystemExit(f"{name}: bound {bound}, expected {dict(zip(fn.arg_names, values))}")
    print("bound", len(kernels))
""")


def test_every_kernel_binds_its_arguments_in_compiled_triton():
    # in a fresh process: the interpreter test module sets TRITON_INTERPRET=1 in its worker, and
    # interpreted kernels have no binder
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", _BIND_EVERY_KERNEL], capture_output=True, text=True, timeout=300,
                          env=env)
    if done.returncode == 3:
        pytest.skip(f"this Triton ({done.stdout.strip()}) builds its binder differently: check on a GPU")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.startswith("bound "), done.stdout


def test_fused_kernels_are_opt_in_and_the_block_restores_the_registry(monkeypatch):
    """Without ``LPM_FUSED_KERNELS=1`` nothing is registered for CUDA; ``fused_registered`` puts the
    fused kernels in for its block only. (CUDA is faked: registering needs no device.)"""
    import torch

    from lpm import kernels
    from lpm.kernels import registry
    from lpm.kernels import triton as fused_kernels

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("LPM_FUSED_KERNELS", raising=False)
    fused_kernels.unregister_fused()  # as a machine without the variable starts

    def cuda_impls():
        return sorted(impl.name for op in registry.OPS for impl in registry.implementations(op)
                      if impl.device == "cuda")

    before = cuda_impls()
    assert not fused_kernels.register_available()
    assert cuda_impls() == before
    with fused_kernels.fused_registered() as on:
        assert on
        assert kernels.lookup("neighbor_pull", torch.device("cuda"), torch.float32, None) \
            is not registry.OPS["neighbor_pull"]
        assert len(cuda_impls()) == len(before) + 3 * 2 + 2 + 2  # pull (3 pair kinds), sum, followers; 2 dtypes
    assert cuda_impls() == before
