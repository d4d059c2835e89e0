"""Fitted-parameter files are validated on load: every key, finite values in range, errors name file and key."""

from __future__ import annotations

import json
import math

import pytest

from lpm.calibration.common import PARAM_SCHEMAS, load_params, save_params
from lpm.errors import DataFormatError
from tests.reliability.cli import assert_clean_failure, run_cli

CASCADES = dict(transmissibility=0.004, audience=30000.0, audience_spread=1.0, attention=0.3, attention_spread=1.0,
                feed_half_life_h=0.25, feed_tail=1.5)


def _write(path, params, kind="cascades"):
    path.write_text(json.dumps({"format": 1, "kind": kind, "params": params, "meta": {}}))
    return path


def test_valid_file_loads(tmp_path):
    params, meta = load_params(save_params(tmp_path / "fit.json", "cascades", CASCADES), "cascades")
    assert params == CASCADES and meta == {}


def test_schemas_name_every_fitted_parameter_of_cascades():
    from lpm.calibration.fit_cascades import PARAMS

    assert set(PARAM_SCHEMAS["cascades"]) == set(PARAMS)


def test_missing_key_is_an_error_not_a_default(tmp_path):
    params = {k: v for k, v in CASCADES.items() if k != "audience"}
    path = _write(tmp_path / "fit.json", params)
    with pytest.raises(DataFormatError, match=rf"{path}.*got no \['audience'\]"):
        load_params(path, "cascades")


def test_unknown_key_is_an_error(tmp_path):
    path = _write(tmp_path / "fit.json", {**CASCADES, "transmisibility": 0.1})
    with pytest.raises(DataFormatError, match=rf"{path}.*unknown \['transmisibility'\]"):
        load_params(path)


@pytest.mark.parametrize("value, needle", [(1.5, r"'transmissibility' in \(0.0, 1.0\).*got 1.5"),
                                           (0.0, r"'transmissibility' in \(0.0, 1.0\).*got 0.0"),
                                           ("0.1", r"a number for 'transmissibility'")])
def test_out_of_range_value_names_file_and_key(tmp_path, value, needle):
    path = _write(tmp_path / "fit.json", {**CASCADES, "transmissibility": value})
    with pytest.raises(DataFormatError, match=needle) as info:
        load_params(path, "cascades")
    assert str(path) in str(info.value)


def test_nan_names_file_and_key(tmp_path):
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"format": 1, "kind": "cascades", "params": {**CASCADES, "feed_tail": math.nan},
                                "meta": {}}))  # json writes NaN, which Python reads back
    with pytest.raises(DataFormatError, match=rf"finite 'feed_tail' in {path}"):
        load_params(path, "cascades")


def test_explicit_schema_argument(tmp_path):
    path = _write(tmp_path / "fit.json", {"a": 0.5}, kind="custom")
    assert load_params(path, "custom", schema={"a": (0.0, 1.0)})[0] == {"a": 0.5}
    with pytest.raises(DataFormatError, match="'a' in"):
        load_params(path, "custom", schema={"a": (0.0, 0.1)})
    with pytest.raises(DataFormatError, match="kind among"):
        load_params(path)


def test_cli_run_with_out_of_range_params(tmp_path):
    path = _write(tmp_path / "fit.json", {**CASCADES, "transmissibility": 1.5})
    result = run_cli("run", "misinformation", "--agents", "500", "--steps", "1", "--seeds", "1", "--quiet",
                     "--out", str(tmp_path / "out"), "--params", str(path))
    assert_clean_failure(result, "DataFormatError", str(path), "'transmissibility'", "1.5")


def test_cli_run_with_missing_key(tmp_path):
    path = _write(tmp_path / "fit.json", {k: v for k, v in CASCADES.items() if k != "feed_tail"})
    result = run_cli("run", "misinformation", "--agents", "500", "--steps", "1", "--seeds", "1", "--quiet",
                     "--out", str(tmp_path / "out"), "--params", str(path))
    assert_clean_failure(result, "DataFormatError", str(path), "feed_tail")
