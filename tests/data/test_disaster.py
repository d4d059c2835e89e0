"""load_disaster: daily aggregation, duplicates, alignment on the peak, malformed input, the real events."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lpm.data import DisasterSeries, load_disaster, load_disaster_events
from lpm.errors import ConfigError, DataFormatError

ROWS = [
    "num,datetime,label",
    "1,2020-01-01 10:00:00,1",
    "2,2020-01-01 23:59:00,0",
    "2,2020-01-01 23:59:00,0",   # exact duplicate
    "3,2020-01-03 00:00:00,1",   # 2020-01-02 has no posts
    "4,2020-01-03 08:30,1",      # seconds are optional
    "",
    "5,2020-01-03 09:00:00,0",
    "6,2020-01-04 12:00:00,1",
]


def write(tmp_path, rows, name="2020Test.csv"):
    path = tmp_path / name
    path.write_text("\n".join(rows) + "\n")
    return path


def test_daily_series_by_hand(tmp_path):
    series = load_disaster(write(tmp_path, ROWS))
    assert series.event == "2020Test"
    assert series.day.tolist() == [np.datetime64(d) for d in ("2020-01-01", "2020-01-02", "2020-01-03", "2020-01-04")]
    assert series.volume.tolist() == [2.0, 0.0, 3.0, 1.0]
    share = series.negative_share.tolist()
    assert share[0] == 0.5 and math.isnan(share[1]) and share[2] == pytest.approx(2 / 3) and share[3] == 1.0
    assert series.volume.dtype == series.negative_share.dtype == torch.float64
    assert series.peak_index == 2 and series.peak_day == np.datetime64("2020-01-03")
    assert series.label.tolist() == [1, 0, 1, 1, 0, 1]
    assert series.time[3] == np.datetime64("2020-01-03T08:30:00")
    report = series.report
    assert (report.files, report.rows, report.duplicates, report.malformed) == (1, 7, 1, 0)
    assert "duplicates: 1" in report.summary()
    assert load_disaster(write(tmp_path, ROWS), event="test").event == "test"


def test_aligned_on_peak_pads_with_nan(tmp_path):
    series = load_disaster(write(tmp_path, ROWS))
    volume, share = series.aligned(3, 2)
    assert volume.shape == share.shape == (6,)
    nan = float("nan")
    assert torch.allclose(volume, torch.tensor([nan, 2.0, 0.0, 3.0, 1.0, nan], dtype=torch.float64), equal_nan=True)
    assert torch.allclose(share, torch.tensor([nan, 0.5, nan, 2 / 3, 1.0, nan], dtype=torch.float64), equal_nan=True)
    volume, _ = series.aligned(0, 0)
    assert volume.tolist() == [3.0]
    with pytest.raises(ConfigError):
        series.aligned(-1, 2)


@pytest.mark.parametrize("bad", ["7,2020-01-05 10:00:00,2", "7,2020-01-05,1", "x,2020-01-05 10:00:00,1",
                                 "7,2020-02-30 10:00:00,1", "7,2020-01-05 10:00:00,1,extra"])
def test_malformed_rows(tmp_path, bad):
    path = write(tmp_path, ROWS[:3] + [bad] + ROWS[3:])
    with pytest.raises(DataFormatError, match=r"2020Test\.csv, line 4: Expected"):
        load_disaster(path)
    series = load_disaster(path, errors="skip")
    assert series.report.malformed == 1 and series.report.malformed_examples[0][1:] == (4, bad)
    assert series.volume.sum() == 6


def test_header_and_arguments_are_checked(tmp_path):
    with pytest.raises(DataFormatError, match="line 1: Expected the header"):
        load_disaster(write(tmp_path, ["id,time,label"] + ROWS[1:]))
    with pytest.raises(DataFormatError, match="readable"):
        load_disaster(tmp_path / "missing.csv")
    with pytest.raises(ConfigError):
        load_disaster(write(tmp_path, ROWS), errors="warn")


def test_load_events_sorted_by_name(tmp_path):
    write(tmp_path, ROWS, "b.csv")
    write(tmp_path, ROWS[:2], "a.csv")
    (tmp_path / "notes.txt").write_text("ignored")
    events = load_disaster_events(tmp_path)
    assert [e.event for e in events] == ["a", "b"]
    assert events[0].volume.tolist() == [1.0] and events[0].peak_index == 0
    with pytest.raises(DataFormatError):
        load_disaster_events(tmp_path / "missing")


def test_real_events(shared_data):
    folder = shared_data / "natural_hazards"
    if not folder.is_dir():
        pytest.skip(f"{folder} not present")
    events = {e.event: e for e in load_disaster_events(folder)}
    assert list(events) == ["2011Tornado", "2012Sandy", "2013Floods", "2016Blizzard", "2016Matthew",
                            "2017Hurricane", "2018Wildfires"]
    assert all(isinstance(e, DisasterSeries) for e in events.values())
    # README: Sandy's volume peaks on landfall day
    assert events["2012Sandy"].peak_day == np.datetime64("2012-10-29")
    # README: duplicated rows exist in Matthew (measured 751; Sandy 19, Floods 2, Hurricane 1, others 0)
    assert events["2016Matthew"].report.duplicates == 751
    assert all(e.report.malformed == 0 for e in events.values())
    # label 1 is the majority in every event, as a base rate of ~0.75 negative implies
    assert all(float(e.label.double().mean()) > 0.5 for e in events.values())
    volume, share = events["2012Sandy"].aligned(7, 7)
    assert float(volume[7]) == float(volume.nan_to_num().max()) and torch.isnan(volume[0])
