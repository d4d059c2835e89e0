"""Bookkeeping shared by the loaders: the ``errors`` policy and malformed-line examples."""

from __future__ import annotations

from dataclasses import dataclass, field

from lpm.errors import ConfigError, DataFormatError

__all__ = ["MalformedLog", "check_errors"]

_MAX_EXAMPLES = 20


def check_errors(errors: object) -> None:
    """Boundary check of a loader's ``errors`` policy."""
    if errors not in ("raise", "skip"):
        raise ConfigError(f"Expected errors in ('raise', 'skip') (got {errors!r})")


@dataclass
class MalformedLog:
    """Counts malformed lines under ``errors="skip"`` (keeping the first few ``(file, line_no, text)``,
    line numbers from 1) or raises on the first one under ``errors="raise"``."""

    malformed: int = 0
    malformed_examples: list[tuple[str, int, str]] = field(default_factory=list)

    def _bad(self, errors: str, file: str, line_no: int, text: str, expected: str) -> None:
        if errors == "raise":
            raise DataFormatError(f"{file}, line {line_no}: Expected {expected} (got {text[:200]!r})")
        self.malformed += 1
        if len(self.malformed_examples) < _MAX_EXAMPLES:
            self.malformed_examples.append((file, line_no, text))

    def _example_lines(self) -> list[str]:
        return [f"  {file}:{line_no}: {text[:120]}" for file, line_no, text in self.malformed_examples]
