"""Test-session wide settings.

Airflow reads its configuration when first imported, so a private AIRFLOW_HOME (SQLite, no examples) is set here,
before any test module imports airflow: the suite never touches a developer's own Airflow or the running stack.
Tests that need the live stack get it from the session fixtures in tests/integration/conftest.py, on free ports.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="factory-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# Keep test logs readable: GX logs hundreds of INFO lines at import.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
