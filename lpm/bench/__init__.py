"""Benchmarks behind ``lpm bench``: lpm against NDlib on the CPU (BENCHMARKS.md section 1).

:mod:`~lpm.bench.ndlib` runs the comparison (and documents what an iteration is on each side),
:mod:`~lpm.bench.opinion` and :mod:`~lpm.bench.cascade` the two kinds of model side by side,
:mod:`~lpm.bench.common` the seeded set-up they share, :mod:`~lpm.bench.report` the table and
:mod:`~lpm.bench.cli` the options of ``lpm bench ndlib`` and ``python -m lpm.bench``.
"""

from lpm.bench.cli import add_arguments, main, run
from lpm.bench.common import MODELS
from lpm.bench.ndlib import bench_ndlib
from lpm.bench.report import format_table

__all__ = ["bench_ndlib", "format_table", "add_arguments", "run", "main", "MODELS"]
