"""MkDocs hook: pages whose content is generated from the code at build time, so they cannot drift.

* ``<!-- lpm:cli -->`` becomes the help of every ``lpm`` command and subcommand, read from the
  CLI's own parser (``lpm.cli.build_parser``).
* ``<!-- lpm:readme SECTION -->`` becomes the README section headed ``## SECTION`` (up to the next
  ``## `` heading), its headings moved one level down and its repository-relative links to pages
  of this site rewritten to the site's pages.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
_README = re.compile(r"<!--\s*lpm:readme\s+(.+?)\s*-->")
_CLI = "<!-- lpm:cli -->"
_WIDTH = "100"
#: top-level folders installed as subpackages of lpm (pyproject's package-dir)
_SUBPACKAGES = ("calibration", "kernels", "scenarios")
_mirror: list[Path] = []  # argparse wraps help to $COLUMNS: a fixed width gives the same page on every machine


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def _cli_reference() -> str:
    from lpm.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _WIDTH
    try:
        sections: list[str] = []

        def walk(parser: argparse.ArgumentParser, path: list[str], depth: int) -> None:
            title = " ".join(["lpm", *path])
            sections.append(f"{'#' * depth} `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
            for name, child in _subcommands(parser):
                walk(child, [*path, name], min(depth + 1, 4))

        walk(build_parser(), [], 2)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def _readme_section(title: str, page_path: str) -> str:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    heading = f"## {title}"
    if heading not in lines:
        raise ValueError(f"Expected a README section {heading!r} for {page_path} (not found)")
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    body = "\n".join(lines[start:end]).strip("\n")
    body = re.sub(r"^(#{3,5}) ", r"#\1 ", body, flags=re.MULTILINE)
    # links from the README into docs/ point at this site's pages, relative to the including page
    depth = page_path.count("/")
    return re.sub(r"\]\(docs/([^)]+)\)", lambda m: f"]({'../' * depth}{m.group(1)})", body)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if _CLI in markdown:
        markdown = markdown.replace(_CLI, _cli_reference())
    return _README.sub(lambda m: _readme_section(m.group(1), page.file.src_uri), markdown)


@event_priority(100)  # before mkdocstrings' on_config, which creates its handler with these paths
def on_config(config: Any, **kwargs: Any) -> Any:
    """Point the API pages' source reader at the package as it is installed.

    ``lpm.calibration``, ``lpm.kernels`` and ``lpm.scenarios`` live in top-level folders mapped into
    ``lpm`` at install time; griffe reads sources by folder, so it is given a temporary ``lpm/`` of
    links: every entry of ``lpm/`` plus those folders under their installed names.
    """
    root = Path(tempfile.mkdtemp(prefix="lpm-docs-"))
    _mirror.append(root)
    package = root / "lpm"
    package.mkdir()
    for entry in (ROOT / "lpm").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in _SUBPACKAGES:
        (package / name).symlink_to(ROOT / name)
    config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})["paths"] = [str(root)]
    return config


def on_shutdown(**kwargs: Any) -> None:
    while _mirror:
        shutil.rmtree(_mirror.pop(), ignore_errors=True)
