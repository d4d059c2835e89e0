"""Typed errors raised by lpm.

Every error raised at an input boundary (loaders, constructors, ``simulate``) is one of these, with a
message of the form "Expected X (got Y)".
"""

from __future__ import annotations

__all__ = [
    "LPMError",
    "GraphFormatError",
    "DataFormatError",
    "ConfigError",
    "StateError",
    "BackendError",
    "CacheMissError",
    "NumericalError",
    "ResourceError",
    "DependencyError",
]


class LPMError(Exception):
    """Base class of every error lpm raises on purpose."""


class GraphFormatError(LPMError, ValueError):
    """A graph (edge list, file, generator argument) is malformed."""


class DataFormatError(LPMError, ValueError):
    """A data file or table does not have the expected format."""


class ConfigError(LPMError, ValueError):
    """A model, scenario or simulation setting is out of its domain."""


class StateError(LPMError, ValueError):
    """A population state has inconsistent shapes, dtypes, devices or out-of-range values."""


class BackendError(LPMError, RuntimeError):
    """An LLM or embedding backend failed or returned an answer that violates the schema."""


class CacheMissError(LPMError, KeyError):
    """An offline decision cache was asked for an entry it does not hold."""


class NumericalError(LPMError, FloatingPointError):
    """A NaN or Inf appeared in the simulated state (checked at save points, never in the step)."""


class ResourceError(LPMError, MemoryError):
    """An input would need more memory than the machine has (checked before allocating)."""


class DependencyError(LPMError, ImportError):
    """An optional dependency a feature needs is not installed (the message says how to install it)."""
