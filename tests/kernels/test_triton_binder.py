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
    import triton
    from triton.runtime.jit import create_function_from_signature
    from lpm.kernels.triton import _jit

    kernels = {name: fn for name, fn in vars(_jit).items() if isinstance(fn, triton.runtime.jit.JITFunction)
               and not name.startswith("_")}
    assert len(kernels) >= 6, sorted(kernels)
    for name, fn in kernels.items():
        binder = create_function_from_signature(fn.signature, fn.params, None)  # ints need no backend
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
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.startswith("bound "), done.stdout
