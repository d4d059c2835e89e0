"""Run configuration: YAML files and --set layered onto a scenario, typed errors, round trips."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from lpm.cli import main
from lpm.config import SWEEP_OPTIONS, resolve
from lpm.errors import ConfigError
from lpm.scenario import load_scenario, run_scenario, settings

SMALL = ["--agents", "600", "--seeds", "2", "--steps", "8", "--quiet", "--logger", "none"]
SCENARIOS = ("default", "disaster", "misinformation", "polarization", "polarization_polblogs")


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_resolved_defaults_are_the_scenarios_own(name):
    """No layer: the scenario comes back unchanged, and every one of its settings is a key."""
    scenario = load_scenario(name)
    resolved = resolve(name)
    assert resolved.scenario.config == scenario.config
    assert {k: getattr(resolved.scenario, k) for k in ("agents", "days", "dt", "seed", "seeds")} == \
           {k: getattr(scenario, k) for k in ("agents", "days", "dt", "seed", "seeds")}
    assert {k: v for k, v in resolved.values.items() if k in settings(scenario)} == settings(scenario)


def test_print_config_round_trip_reproduces_the_summary(tmp_path, capsys):
    """--print-config -> --config runs the same scenario: the same numbers, the same config.yaml; the
    run folder's config.yaml, fed back, does too."""
    args = ["misinformation", "--set", "model.cascade.transmissibility=0.02", "--set", "seed=3", *SMALL]
    assert main(["run", *args, "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "transmissibility: 0.02" in printed and "seed: 3" in printed
    config = tmp_path / "printed.yaml"
    config.write_text(printed)

    assert main(["run", *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["run", "--config", str(config), "--quiet", "--logger", "none", "--out", str(tmp_path / "b")]) == 0
    first = tmp_path / "a" / "misinformation"
    assert main(["run", "--config", str(first / "config.yaml"), "--quiet", "--logger", "none",
                 "--out", str(tmp_path / "c")]) == 0
    reference = _summary(first)
    assert reference["provenance"]["seeds"] == [3000, 3001]
    for other in ("b", "c"):
        summary = _summary(tmp_path / other / "misinformation")
        assert summary["arms"] == reference["arms"] and summary["differences"] == reference["differences"]
        assert summary["provenance"]["config"] == reference["provenance"]["config"]
        assert (tmp_path / other / "misinformation" / "config.yaml").read_text() == printed
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / other / "misinformation" / "arms.parquet"),
                                      pd.read_parquet(first / "arms.parquet"))


def test_set_changes_the_parameter_the_model_uses():
    """The overridden value reaches the built module, and the cascade spreads more with it."""
    finals = {}
    for value in (0.002, 0.05):
        scenario = resolve("misinformation", overrides=[f"model.cascade.transmissibility={value}", "agents=1500",
                                                        "seeds=2"]).scenario
        graph = scenario.build_graph(scenario.agents, scenario.seed, torch.device("cpu"))
        model = scenario.build_model(graph, scenario.dt, scenario.seed)
        assert float(model.cascade.transmissibility) == pytest.approx(value, rel=1e-5)
        result = run_scenario(scenario, steps=24, progress=False).counterfactual
        finals[value] = result.summary().set_index("arm").loc["none", "final_reshares"]
    assert finals[0.05] > 3 * finals[0.002]


def test_layers_apply_in_order(tmp_path):
    """Scenario < --config files (in order) < the command's flags < --set (in order)."""
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("scenario: disaster\nagents: 700\ndays: 2.5\nmodel:\n  emotion:\n    decay: 0.2\n")
    two.write_text("agents: 800\nlandfall:\n  at_h: 40.0\n")
    resolved = resolve(None, configs=[str(one), str(two)], flags={"seed": 5, "agents": None},
                       overrides=["model.emotion.decay=0.3", "seed=6"])
    s = resolved.scenario
    assert s.name == "disaster" and s.agents == 800 and s.days == 2.5 and s.seed == 6
    assert s.config.model.emotion.decay == 0.3 and s.config.landfall.at_h == 40.0
    assert s.config.model.emotion.coupling == load_scenario("disaster").config.model.emotion.coupling
    with pytest.raises(ConfigError, match="landfall"):  # no scenario named: default, which has no landfall
        resolve(None, configs=[str(two)])


@pytest.mark.parametrize("entry, words", [
    ("model.cascade.transmisibility=0.01", ["'model.cascade.transmisibility'", "transmissibility", "model.cascade"]),
    ("agents=1.5", ["agents", "int", "1.5", "float"]),
    ("model.cascade.attention=high", ["model.cascade.attention", "float", "'high'", "str"]),
    ("model=3", ["model", "mapping", "cascade", "3"]),
    ("grid.label_h=[1]", ["'grid'", "top level"]),
    ("agents", ["KEY=VALUE"]),
])
def test_bad_settings_name_the_key_the_expected_and_the_found(entry, words):
    with pytest.raises(ConfigError) as error:
        resolve("misinformation", overrides=[entry])
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_bad_files_and_values(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  cascade:\n    feed_tale: 2.0\n")
    with pytest.raises(ConfigError, match="feed_tale"):
        resolve("misinformation", configs=[str(bad)])
    broken = tmp_path / "broken.yaml"
    broken.write_text("agents: [1, 2\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        resolve("misinformation", configs=[str(broken)])
    with pytest.raises(ConfigError, match="no such file"):
        resolve("misinformation", configs=[str(tmp_path / "missing.yaml")])
    other = tmp_path / "other.yaml"
    other.write_text("scenario: disaster\n")
    with pytest.raises(ConfigError, match="disaster"):
        resolve("misinformation", configs=[str(other)])
    with pytest.raises(ConfigError, match="agents >= 2"):  # in range: checked where the value is used
        resolve("misinformation", overrides=["agents=1"])
    with pytest.raises(ConfigError, match="transmissibility"):
        resolve("misinformation", overrides=["model.cascade.transmissibility=2.0"]).scenario.build_model(
            load_scenario("misinformation").build_graph(50, 0, torch.device("cpu")), 0.1, 0)
    # on the command line: exit status 2 and the message, no traceback
    assert main(["run", "misinformation", "--config", str(bad), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "ConfigError" in err and "feed_tale" in err and "bad.yaml" in err and "feed_tail" in err


def test_data_dir_is_an_option_with_the_environment_as_fallback(tmp_path, monkeypatch):
    from lpm.scenarios import polarization_polblogs as polblogs

    monkeypatch.setenv("LPM_DATA", str(tmp_path / "from_env"))
    assert polblogs.data_dir() == tmp_path / "from_env"
    with pytest.raises(ConfigError, match="from_env"):
        run_scenario(resolve("polarization_polblogs").scenario, steps=1, progress=False)
    scenario = resolve("polarization_polblogs", flags={"data_dir": str(tmp_path / "given")}).scenario
    assert scenario.config.data_dir == str(tmp_path / "given")
    with pytest.raises(ConfigError, match="given"):  # the option wins over the environment
        run_scenario(scenario, steps=1, progress=False)
    with pytest.raises(ConfigError, match="reads none"):
        resolve("misinformation", flags={"data_dir": str(tmp_path)})


def test_sweep_config_round_trip(tmp_path, capsys):
    args = ["misinformation", "--grid", "label_h=1,none", "--grid", "prebunk_share=0,0.3", *SMALL]
    assert main(["sweep", *args, "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "label_h:" in printed and "null" in printed
    config = tmp_path / "sweep.yaml"
    config.write_text(printed)
    assert main(["sweep", *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["sweep", "--config", str(config), "--quiet", "--logger", "none", "--out", str(tmp_path / "b")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "misinformation-sweep" / "sweep.parquet"),
                                  pd.read_parquet(tmp_path / "b" / "misinformation-sweep" / "sweep.parquet"))
    summary = _summary(tmp_path / "a" / "misinformation-sweep")
    assert summary["kind"] == "sweep" and summary["grid"] == {"label_h": [1, None], "prebunk_share": [0, 0.3]}
    assert resolve("misinformation", configs=[str(config)], options=SWEEP_OPTIONS)["grid"] == summary["grid"]
    assert main(["sweep", "misinformation", *SMALL, "--out", str(tmp_path / "c")]) == 2
    assert "--grid" in capsys.readouterr().err
