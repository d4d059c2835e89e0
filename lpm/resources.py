"""Memory estimates checked before large allocations, so that a huge input fails fast with a
:class:`~lpm.errors.ResourceError` instead of being killed by the operating system.

The limit is the memory available now (``MemAvailable`` of ``/proc/meminfo``, else
``os.sysconf``), lowered by the environment variable ``LPM_MEMORY_LIMIT`` when set (bytes, or a
number with a ``K``/``M``/``G``/``T`` suffix; read at each check, never at import). On a CUDA device
the limit is the device's free memory. Estimates are rough upper bounds of the peak a call needs;
they only guard against inputs that cannot fit, not against every out-of-memory.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from lpm.errors import ConfigError, ResourceError

__all__ = ["available_memory", "check_memory", "format_bytes"]

_SUFFIX = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def format_bytes(count: float) -> str:
    """``count`` bytes in human units (``"24.0 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} PiB"  # pragma: no cover


def _env_limit() -> Optional[int]:
    raw = os.environ.get("LPM_MEMORY_LIMIT", "").strip()
    if not raw:
        return None
    number, suffix = raw.upper().rstrip("IB"), ""
    if number and number[-1] in _SUFFIX:
        number, suffix = number[:-1], number[-1]
    try:
        value = float(number) * _SUFFIX[suffix]
    except ValueError:
        raise ConfigError(f"Expected LPM_MEMORY_LIMIT as bytes or a number with K/M/G/T (got {raw!r})") from None
    if not value > 0:
        raise ConfigError(f"Expected a positive LPM_MEMORY_LIMIT (got {raw!r})")
    return int(value)


def _host_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def available_memory(device: torch.device | str | None = None) -> Optional[int]:
    """Bytes that may be allocated on ``device`` (host memory for CPU), ``None`` when unknown."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    found: Optional[int] = None
    if device.type == "cuda" and torch.cuda.is_available():
        found = int(torch.cuda.mem_get_info(device)[0])
    elif device.type == "cpu":
        found = _host_available()
    cap = _env_limit()
    if cap is not None:
        found = cap if found is None else min(found, cap)
    return found


def check_memory(what: str, nbytes: float, device: torch.device | str | None = None) -> None:
    """Raise :class:`ResourceError` when ``what`` would need more than :func:`available_memory`.

    Args:
        what: the input, as the message should name it (``"a graph of 3000000001 nodes"``).
        nbytes: estimated peak bytes.
        device: where the allocation happens (default CPU).
    """
    limit = available_memory(device)
    if limit is not None and nbytes > limit:
        where = "" if device is None or torch.device(device).type == "cpu" else f" on {device}"
        raise ResourceError(
            f"Expected inputs that fit in the {format_bytes(limit)} of memory available{where} "
            f"(got {what}, which needs about {format_bytes(nbytes)})"
        )
