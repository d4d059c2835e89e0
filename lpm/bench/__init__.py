"""Benchmarks behind ``lpm bench``: lpm against NDlib on the CPU (BENCHMARKS.md section 1).

:mod:`~lpm.bench.ndlib` runs the comparison (and documents what an iteration is on each side),
:mod:`~lpm.bench.opinion` and :mod:`~lpm.bench.cascade` the two kinds of model side by side,
:mod:`~lpm.bench.common` the seeded set-up they share, :mod:`~lpm.bench.report` the table and
:mod:`~lpm.bench.cli` the options of ``lpm bench ndlib`` and ``python -m lpm.bench``.
:mod:`~lpm.bench.step` times the default model's step against the memory floor (``lpm bench cpu|gpu``,
BENCHMARKS.md section 2).
"""

from lpm.bench.cli import add_arguments, add_step_arguments, main, run, run_step
from lpm.bench.common import MODELS
from lpm.bench.ndlib import bench_ndlib
from lpm.bench.report import format_table
from lpm.bench.step import bench_step, format_step_table

__all__ = ["bench_ndlib", "format_table", "add_arguments", "run", "main", "MODELS", "bench_step", "format_step_table",
           "add_step_arguments", "run_step"]
