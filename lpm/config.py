"""Run configuration: a scenario's settings as one typed tree, from YAML files and ``--set key=value``.

The tree of ``lpm run`` / ``lpm sweep``::

    scenario: misinformation      # a name in lpm.scenarios, or a .py file
    agents: 100000                # the Scenario's own fields: agents, days, dt, batch, seed, seeds
    ...
    steps: null                   # the run's options (null: the scenario's horizon), device, ...
    model:                        # the scenario's settings (Scenario.config): model parameters,
      cascade:                    # shocks, data folder; what they are depends on the scenario
        transmissibility: 0.0055

Layers, later ones winning: the scenario's values; each ``--config`` file in order; the command's
own flags (``--agents``, ``--seed``, ``--data-dir``, ...); each ``--set`` entry in order. Parsing,
merging and type checks are OmegaConf's, on a structured config built from the dataclasses (the
Scenario's fields and the scenario's ``Config``), so a key maps one-to-one onto a typed constructor
argument; this module only builds that schema, turns OmegaConf's errors into :class:`ConfigError`
naming the key, the type expected and the value found, and maps the result back onto a
:class:`~lpm.scenario.Scenario`. Values are range-checked where they are used (``Scenario``, the
dynamics modules' constructors), with the same kind of error.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from lpm.errors import ConfigError
from lpm.provenance import to_yaml
from lpm.scenario import SCENARIO_KEYS, Scenario, load_scenario

__all__ = ["Resolved", "resolve", "RUN_OPTIONS", "SWEEP_OPTIONS", "to_yaml"]

#: Options of ``lpm run`` beyond the scenario's: ``(type, default)``.
RUN_OPTIONS: Mapping[str, tuple[Any, Any]] = {
    "steps": (Optional[int], None),
    "device": (str, "cpu"),
    "params": (Optional[str], None),
    "posterior": (bool, False),
    "archetypes": (Optional[int], None),
    "backend": (str, "embedding"),
    "llm_model": (Optional[str], None),
}
#: Options of ``lpm sweep`` beyond the scenario's.
SWEEP_OPTIONS: Mapping[str, tuple[Any, Any]] = {
    "steps": (Optional[int], None),
    "device": (str, "cpu"),
    "grid": (Optional[Dict[str, List[Any]]], None),
    "chunk": (Optional[int], None),
}


@dataclass(frozen=True)
class Resolved:
    """A resolved configuration: the scenario it describes and every value, as plain data.

    Attributes:
        scenario: the scenario with every setting applied (``agents``, ``seed``, its ``config``, ...).
        values: the whole tree as plain dicts, lists and scalars (what ``--print-config`` prints
            and a run folder's ``config.yaml`` holds).
    """

    scenario: Scenario
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def to_yaml(self) -> str:
        return to_yaml(self.values)


def _type_name(kind: Any) -> str:
    """``int``, ``float or null``, ``a mapping with keys [...]``: a field's type as a user reads it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin in (dict, Dict):
        return f"a mapping of {_type_name(args[1])} lists" if args and typing.get_origin(args[1]) in (list, List) \
            else "a mapping"
    if origin in (list, List):
        return "a list"
    if dataclasses.is_dataclass(kind):
        return f"a mapping with keys {[f.name for f in dataclasses.fields(kind)]}"
    if kind is Any:
        return "any value"
    return getattr(kind, "__name__", str(kind))


def _field_type(root: type, key: str) -> Any:
    """The declared type of dotted ``key`` in the dataclass ``root`` (``None`` if it has none)."""
    kind: Any = root
    for part in key.split("."):
        if not dataclasses.is_dataclass(kind):
            return None
        hints = typing.get_type_hints(kind)
        if part not in hints:
            return None
        kind = hints[part]
    return kind


def _known_keys(root: type, key: str) -> list[str]:
    """The keys beside dotted ``key`` (those of its parent mapping)."""
    parent = key.rpartition(".")[0]
    kind = _field_type(root, parent) if parent else root
    return [f.name for f in dataclasses.fields(kind)] if dataclasses.is_dataclass(kind) else []


def _error(exc: OmegaConfBaseException, root: type, layer: DictConfig, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or None
    if key is None:
        return ConfigError(f"Expected a configuration matching the scenario's keys in {source} "
                           f"(got: {str(exc).splitlines()[0]})")
    if isinstance(exc, ConfigKeyError):
        return ConfigError(f"Expected a key among {_known_keys(root, key)} for {key.rpartition('.')[0] or 'the top level'} "
                           f"in {source} (got unknown key {key!r})")
    found = OmegaConf.select(layer, key, default=getattr(exc, "value", None), throw_on_missing=False)
    if isinstance(found, DictConfig):
        found = OmegaConf.to_container(found)
    expected = _type_name(_field_type(root, key)) if _field_type(root, key) is not None else "another value"
    return ConfigError(f"Expected {key} to be {expected} in {source} (got {found!r} of type {type(found).__name__})")


def _load(path: str) -> DictConfig:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"Expected --config to name a YAML file (got {path!r}: no such file)")
    try:
        loaded = OmegaConf.load(file)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"Expected valid YAML in {path}{where} (got {getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"Expected a mapping of keys at the top of {path} (got a {type(loaded).__name__})")
    return loaded


def _dotlist(entries: Sequence[str]) -> list[tuple[str, DictConfig]]:
    layers = []
    for entry in entries:
        key, sep, _ = entry.partition("=")
        if not sep or not key.strip() or any(not part.isidentifier() for part in key.strip().split(".")):
            raise ConfigError(f"Expected --set KEY=VALUE with a dotted KEY such as model.cascade.transmissibility=0.01 "
                              f"(got {entry!r})")
        try:
            layers.append((f"--set {entry}", OmegaConf.from_dotlist([entry.strip()])))
        except OmegaConfBaseException as exc:
            raise ConfigError(f"Expected --set KEY=VALUE with a parseable VALUE (got {entry!r}: "
                              f"{str(exc).splitlines()[0]})") from None
    return layers


def _schema(scenario: Scenario, name: str, options: Mapping[str, tuple[Any, Any]]) -> tuple[type, Any]:
    """A dataclass type of the whole tree and its instance holding the scenario's values."""
    base = {"scenario": (str, name)}
    base.update({key: (typing.get_type_hints(Scenario)[key], getattr(scenario, key)) for key in SCENARIO_KEYS})
    base.update(options)
    own: dict[str, tuple[Any, Any]] = {}
    if scenario.config is not None:
        hints = typing.get_type_hints(type(scenario.config))
        for f in dataclasses.fields(scenario.config):
            if f.name in base:
                raise ConfigError(f"Expected scenario {scenario.name!r}'s config keys to differ from the run's "
                                  f"{sorted(base)} (got {f.name!r} in both)")
            own[f.name] = (hints[f.name], getattr(scenario.config, f.name))
    fields = {**base, **own}
    # A default is shared, never mutated (the dataclass is only a schema): a factory keeps
    # dataclasses from refusing dict defaults.
    schema = dataclasses.make_dataclass("RunConfig", [(k, t, dataclasses.field(default_factory=lambda d=d: d))
                                                      for k, (t, d) in fields.items()])
    return schema, schema()


def _check_shape(root: type, layer: Any, where: str, prefix: str = "") -> None:
    """A scalar or list where the schema has a mapping, named before OmegaConf's merge error hides the key."""
    if not isinstance(layer, DictConfig):
        return
    for key in layer:
        full = f"{prefix}{key}"
        kind = _field_type(root, full)
        value = layer._get_node(key)._value() if not isinstance(layer[key], DictConfig) else layer[key]
        if dataclasses.is_dataclass(kind) and not isinstance(value, DictConfig):
            found = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            raise ConfigError(f"Expected {full} to be {_type_name(kind)} in {where} "
                              f"(got {found!r} of type {type(found).__name__})")
        _check_shape(root, value, where, f"{full}.")


def _pick_scenario(name: Optional[str], files: list[tuple[str, DictConfig]]) -> str:
    named = [(source, str(layer["scenario"])) for source, layer in files if "scenario" in layer]
    if name is None:
        return named[-1][1] if named else "default"
    for source, other in named:
        if other != name and Path(other).resolve() != Path(name).resolve():
            raise ConfigError(f"Expected {source} to configure scenario {name!r} as given on the command line "
                              f"(got scenario {other!r})")
    return name


def resolve(name: Optional[str] = None, *, configs: Sequence[str] = (), flags: Optional[Mapping[str, Any]] = None,
            overrides: Sequence[str] = (), options: Mapping[str, tuple[Any, Any]] = RUN_OPTIONS) -> Resolved:
    """The configuration of a run of scenario ``name`` after every layer (see the module docstring).

    Args:
        name: a scenario name or ``.py`` path (``None``: the last config file's ``scenario``, else
            ``default``).
        configs: YAML files, applied in order.
        flags: the command's flags as ``{key: value}``; ``None`` values are left out.
        overrides: ``KEY=VALUE`` entries (dotted keys, YAML values), applied in order.
        options: the command's own keys with their types and defaults (:data:`RUN_OPTIONS`,
            :data:`SWEEP_OPTIONS`).

    Returns:
        A :class:`Resolved`.

    Raises:
        ConfigError: a missing or malformed file, an entry without ``=``, an unknown key (the message
            lists the keys allowed there), a value of the wrong type (naming the key, the type
            expected and the value found), a config file for another scenario, or a value out of
            range for the scenario.
    """
    files = [(f"--config {path}", _load(path)) for path in configs]
    name = _pick_scenario(name, files)
    source = str(Path(name).resolve()) if name.endswith(".py") else name
    scenario = load_scenario(name)
    root, defaults = _schema(scenario, source, options)
    merged = OmegaConf.structured(defaults)
    layers = list(files)
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    if given:
        layers.append(("the command's flags", OmegaConf.create(given)))
    layers += _dotlist(overrides)
    for where, layer in layers:
        if "scenario" in layer:  # checked by _pick_scenario; a file's relative path stays as written
            layer = OmegaConf.masked_copy(layer, [k for k in layer if k != "scenario"])
        if "data_dir" in layer and "data_dir" not in _known_keys(root, "data_dir"):
            raise ConfigError(f"Expected a scenario that reads data for data_dir / --data-dir in {where} "
                              f"(got scenario {scenario.name!r}, which reads none)")
        _check_shape(root, layer, where)
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as exc:
            raise _error(exc, root, layer, where) from None
    values = OmegaConf.to_container(merged, resolve=True)
    built = OmegaConf.to_object(merged)
    if scenario.config is not None:
        own = {f.name: getattr(built, f.name) for f in dataclasses.fields(scenario.config)}
        scenario = scenario.configure(dataclasses.replace(scenario.config, **own))
    scenario = dataclasses.replace(scenario, **{key: getattr(built, key) for key in SCENARIO_KEYS})
    return Resolved(scenario=scenario, values=values)
