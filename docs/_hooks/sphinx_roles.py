"""A griffe extension for the API pages, adapting two habits of lpm's docstrings to Markdown:

* cross-references in Sphinx roles (``:class:`~lpm.Graph```), which Markdown would print verbatim,
  become inline code linking to the object's entry when the site documents it (an optional
  autoref: no warning when it does not);
* a ``Shapes:`` section, one ``name: layout`` per line, becomes a list (Markdown would run its
  lines together into one paragraph).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`<>]+?)`")


def _replace(text: str, module: str) -> str:
    def one(match: re.Match) -> str:
        tilde, target = match.group(1), match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if tilde else target.lstrip(".")
        if target.startswith(("~", ".")) or not target.replace(".", "").replace("_", "").isalnum():
            return f"`{shown}`"  # a relative target: no identifier to resolve, the name alone
        identifier = target if target.startswith(("lpm.", "torch.")) or target == "lpm" else f"{module}.{target}"
        return f'<autoref identifier="{identifier}" optional><code>{shown}</code></autoref>'

    return _ROLE.sub(one, text)


def _shapes_as_list(text: str) -> str:
    lines = text.splitlines()
    out, section, item = [], None, None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if line.strip() == "Shapes:":
            section, item = indent, None
        elif section is not None and line.strip() and indent <= section:
            section = None  # the next section or the text after it
        elif section is not None and line.strip():
            item = indent if item is None else item
            if indent == item:  # a new entry; deeper lines continue it
                line = f"{line[:indent]}- {line[indent:]}"
        out.append(line)
    return "\n".join(out)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx cross-reference roles and ``Shapes:`` sections in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = obj.docstring.value
        if ":`" in text:
            text = _replace(text, obj.module.path)
        if "Shapes:" in text:
            text = _shapes_as_list(text)
        obj.docstring.value = text
