"""Compile ``fused.cpp`` once per machine and load it with :mod:`ctypes`.

The source includes no torch header, so ``g++ -O3 -fopenmp`` builds it in about 5 s of CPU time
(measured here; merely parsing ``torch/extension.h``, as an extension built with
``torch.utils.cpp_extension`` must, takes 12 s, and that route needs ninja and pybind11). The shared library is cached under ``$LPM_KERNEL_CACHE``, else
``$XDG_CACHE_HOME/lpm/kernels``, else ``~/.cache/lpm/kernels``, named by a hash of the source, the
flags and the compiler's version, so an edit or another compiler builds anew (a private folder under
the temporary folder when that one is not writable). Concurrent builds (pytest workers) each write
a private file and rename it into place. It links ``libgomp.so.1``,
which torch has already loaded, so torch and these loops share one OpenMP runtime.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

__all__ = ["load", "library_path", "build_error", "FLAGS", "SOURCE"]

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused.cpp")
# -ffp-contract=off: no fused multiply-adds, so sums round as the reference's separate ops do.
FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno", "-ffp-contract=off")
_BUILD_TIMEOUT_S = 600

_c = ctypes
_I64, _INT, _PTR, _DBL = _c.c_int64, _c.c_int, _c.c_void_p, _c.c_double
_SIGNATURES = {
    "lpm_plain_forward": [_INT, _INT, _I64, _I64, _I64] + [_PTR] * 8 + [_INT],
    "lpm_plain_backward": [_INT, _INT, _I64, _I64, _I64] + [_PTR] * 10 + [_INT],
    "lpm_pair_forward": [_INT, _INT, _I64, _I64, _I64] + [_PTR] * 5 + [_INT, _PTR, _I64, _I64, _I64]
    + [_DBL] * 4 + [_PTR, _PTR, _INT],
    "lpm_pair_backward": [_INT, _INT, _I64, _I64, _I64] + [_PTR] * 5 + [_INT, _PTR, _I64, _I64, _I64]
    + [_DBL] * 4 + [_PTR] * 5 + [_INT, _c.POINTER(_DBL), _INT],
    "lpm_transpose": [_INT, _I64] + [_PTR] * 5,
    "lpm_plain_source_grad": [_INT, _INT, _I64, _I64, _I64] + [_PTR] * 8 + [_INT],
    "lpm_gated_forward": [_INT, _INT, _I64, _I64, _I64] + [_PTR] * 8 + [_INT, _PTR, _I64, _I64, _I64] + [_DBL] * 4
    + [_PTR, _PTR, _INT],
    "lpm_sum_forward": [_INT, _INT, _I64, _I64, _I64, _I64] + [_PTR] * 6 + [_INT],
    "lpm_sum_backward": [_INT, _INT, _I64, _I64, _I64, _I64] + [_PTR] * 8 + [_INT],
    "lpm_emotion_backward": [_INT, _I64, _I64, _I64] + [_DBL] * 4 + [_PTR] * 5 + [_I64, _PTR, _PTR, _I64]
    + [_PTR] * 7 + [_c.POINTER(_DBL)],
}


def _compiler() -> Optional[str]:
    return shutil.which(os.environ.get("CXX", "g++"))


def _cache_dirs() -> list[Path]:
    """Where the library may be cached, in order: the configured folder, then a private one under
    the temporary folder (a read-only home must not cost the fast path)."""
    explicit = os.environ.get("LPM_KERNEL_CACHE")
    if explicit:
        first = Path(explicit)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        first = Path(base) / "lpm" / "kernels"
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return [first, Path(tempfile.gettempdir()) / f"lpm-kernels-{user}"]


def library_path(compiler: str, folder: Optional[Path] = None) -> Path:
    """Where the library built by ``compiler`` from the current source and flags is cached (in
    ``folder``, by default the first cache folder)."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode(), platform.machine().encode()):
        digest.update(part)
        digest.update(b"\0")
    return (folder or _cache_dirs()[0]) / f"lpm_fused_{digest.hexdigest()[:16]}.so"


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp.so", dir=target.parent)
    os.close(handle)
    start = time.perf_counter()
    try:
        result = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                                timeout=_BUILD_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} exited with {result.returncode}: {result.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("built the fused CPU kernels in %.1f s: %s", time.perf_counter() - start, target)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[Optional[ctypes.CDLL], Optional[str]]:
    """Runs once per process: a failure is logged once and the reference serves from then on."""
    compiler = _compiler()
    lib, error = None, None
    if compiler is None:
        error = f"no C++ compiler ({os.environ.get('CXX', 'g++')!r} is not on PATH)"
    else:
        try:
            import torch  # noqa: F401  (torch's libgomp is loaded first and reused)

            for folder in _cache_dirs():
                target = library_path(compiler, folder)
                try:
                    if not target.exists():
                        _build(compiler, target)
                    break
                except OSError as exc:  # an unwritable cache folder: try the next
                    error = f"{type(exc).__name__}: {exc}"
            else:
                raise OSError(f"no writable cache folder for the fused CPU kernels ({error})")
            lib, error = ctypes.CDLL(str(target)), None
            for name, argtypes in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.argtypes = argtypes
                fn.restype = ctypes.c_int
        except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
            lib, error = None, f"{type(exc).__name__}: {exc}"
    if lib is None:
        log.warning("lpm's fused CPU kernels are unavailable (%s); using the plain-torch reference", error)
    return lib, error


def load() -> Optional[ctypes.CDLL]:
    """The compiled library, building it on first use; ``None`` (with one logged warning) when it
    cannot be built or loaded, in which case callers use the reference."""
    return _load()[0]


def build_error() -> Optional[str]:
    """Why the library is unavailable, or ``None`` when it loaded."""
    return _load()[1]
