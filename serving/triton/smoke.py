"""The smoke model's files and its expected answer, so the smoke DAG and tests check a real prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SMOKE_MODEL_NAME = "factory_smoke"
SMOKE_MODEL_DIR = Path(__file__).parent / "smoke_model"
SMOKE_INPUT = np.array([[0.0], [1.0], [2.5], [-4.0]], dtype=np.float32)


def smoke_model_files() -> dict[str, bytes]:
    """Repository-relative path -> content, e.g. {'config.pbtxt': ..., '1/model.py': ...}."""
    return {
        path.relative_to(SMOKE_MODEL_DIR).as_posix(): path.read_bytes()
        for path in sorted(SMOKE_MODEL_DIR.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def expected_output(x: np.ndarray) -> np.ndarray:
    return (2.0 * x + 1.0).astype(np.float32)


def check_prediction(x: np.ndarray, y: np.ndarray) -> None:
    """Raise if Triton's answer differs from the model's definition (empty outputs included)."""
    expected = expected_output(x)
    if y is None or y.shape != expected.shape or not np.allclose(y, expected, atol=1e-6):
        raise AssertionError(f"smoke model answered {None if y is None else y.tolist()}, expected {expected.tolist()}")
