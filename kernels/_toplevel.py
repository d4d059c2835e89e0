"""Keep lpm's top-level source folders from shadowing installed packages of the same name.

The repository keeps ``kernels/``, ``calibration/`` and ``scenarios/`` at its top level (installed as
``lpm.kernels``, ``lpm.calibration``, ``lpm.scenarios``). Any Python started in the repository root
(``pytest``, ``python -m ...``, a notebook, a script beside it) has that root on ``sys.path`` ahead of
site-packages, so a bare ``import kernels`` (transformers imports the PyPI package ``kernels``) would
find lpm's folder. Each folder's ``__init__`` calls :func:`hand_over` when it is imported under its
bare name: the import is answered by the installed package, or fails as if the folder were absent.
A guard in the package itself holds however Python was started, unlike ``sys.path`` edits in a
conftest or a Makefile, which only cover the ways someone remembered.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

__all__ = ["hand_over"]


def hand_over(name: str, init_file: str) -> None:
    """Replace ``sys.modules[name]`` (lpm's folder, being imported under a bare name) with the
    package of that name found on ``sys.path`` outside the folder's parent directory.

    Raises:
        ModuleNotFoundError: no other package of that name is installed.
    """
    folder = os.path.dirname(os.path.abspath(init_file))
    root = os.path.dirname(folder)
    sys.modules.pop(f"{name}._toplevel", None)  # this helper, loaded through the shadowing folder
    search = [entry for entry in sys.path if os.path.abspath(entry or os.getcwd()) != root]
    spec = importlib.machinery.PathFinder.find_spec(name, search)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r} (the folder {folder} is lpm's, imported as "
                                  f"'lpm.{name}')", name=name)
    module = importlib.util.module_from_spec(spec)
    # the import statement that is running returns sys.modules[name] once this __init__ finishes
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
