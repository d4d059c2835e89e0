"""lpm's top-level folders (kernels/, calibration/, scenarios/) must never shadow installed packages
of the same name, however Python is started in the repository root (kernels/_toplevel.py).

transformers imports the PyPI package ``kernels`` (its kernel-hub integration); before the guard,
every process started in the repository root found lpm's ``kernels/`` instead and sentence-transformers
failed to import. Each case runs in a fresh subprocess whose working directory is the repository root.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: what every way of starting Python must get right: the installed `kernels` (or none at all), and
#: lpm's own folder as `lpm.kernels`; transformers' kernel hub and sentence-transformers import.
PROBE = textwrap.dedent(
    f"""
    import importlib.util, os, sys
    root = {str(ROOT)!r}
    try:
        import kernels
    except ModuleNotFoundError as exc:
        assert "lpm.kernels" in str(exc), exc  # no PyPI kernels installed: fail as if the folder were absent
        installed = False
    else:
        assert os.path.dirname(os.path.abspath(kernels.__file__)) != os.path.join(root, "kernels"), kernels.__file__
        installed = True
    import lpm.kernels
    assert os.path.abspath(lpm.kernels.__file__) == os.path.join(root, "kernels", "__init__.py")
    assert callable(lpm.kernels.neighbor_pull)
    if installed and importlib.util.find_spec("transformers") is not None:
        import transformers.integrations.hub_kernels  # imports names that exist only in the PyPI kernels
        from sentence_transformers import SentenceTransformer
        import lpm.embed
    for bare in ("calibration", "scenarios"):
        try:
            module = __import__(bare)
        except ModuleNotFoundError as exc:
            assert "lpm." + bare in str(exc), exc
        else:
            assert os.path.dirname(os.path.abspath(module.__file__)) != os.path.join(root, bare), module.__file__
    import lpm.calibration.fit_cascades, lpm.scenarios.default
    print("probe ok", installed)
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "probe ok" in result.stdout


@pytest.mark.slow
def test_python_c_from_root() -> None:
    """``python -c`` (and a notebook kernel) puts the working directory first on sys.path."""
    _check(subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300))


@pytest.mark.slow
def test_pythonpath_root() -> None:
    _check(subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=_env(PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=300))


@pytest.mark.slow
def test_script_beside_the_root() -> None:
    """A user script in the repository root: its folder is sys.path[0]."""
    script = ROOT / f"probe_{uuid.uuid4().hex}.py"
    script.write_text(PROBE)
    try:
        _check(subprocess.run([sys.executable, str(script)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=300))
    finally:
        script.unlink()


@pytest.mark.slow
def test_python_m_pytest_from_root(tmp_path: Path) -> None:
    """``python -m pytest`` (what `make test` runs) adds the working directory to sys.path."""
    test_file = tmp_path / "test_probe.py"
    test_file.write_text("def test_probe():\n" + textwrap.indent(PROBE, "    "))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "no:xdist",
                             str(test_file)], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    _check(result)


@pytest.mark.slow
def test_python_m_lpm_after_transformers() -> None:
    """``python -m lpm`` in a process that imported the kernel hub first."""
    code = PROBE + "\nimport runpy\nsys.argv = ['lpm', '--help']\nrunpy.run_module('lpm', run_name='__main__')\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert "probe ok" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stdout + result.stderr


def test_guard_hands_bare_import_to_the_installed_package(tmp_path: Path) -> None:
    """The guard itself, with a stand-in installed package: a bare import gets the other package,
    `lpm.kernels` stays lpm's (no dependency on which packages this environment has)."""
    site = tmp_path / "site"
    (site / "kernels").mkdir(parents=True)
    (site / "kernels" / "__init__.py").write_text("MARK = 'installed'\n")
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(site)!r}]\n"
            "import kernels, lpm.kernels\n"
            "assert kernels.MARK == 'installed', kernels.__file__\n"
            "assert not hasattr(lpm.kernels, 'MARK') and callable(lpm.kernels.neighbor_sum)\n"
            "assert 'kernels._toplevel' not in sys.modules\n"
            "print('probe ok')\n")
    _check(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300))


def test_guard_without_an_installed_package(tmp_path: Path) -> None:
    """No other package of that name: the bare import fails as if the folder were absent."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "try:\n    import scenarios\nexcept ModuleNotFoundError as exc:\n"
            "    assert exc.name == 'scenarios' and 'lpm.scenarios' in str(exc), exc\n"
            "    assert 'scenarios' not in sys.modules\n    print('probe ok')\n")
    if importlib.util.find_spec("scenarios") is not None and "site-packages" in str(importlib.util.find_spec("scenarios").origin):
        pytest.skip("a package named 'scenarios' is installed here")
    _check(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300))
