"""The one place Great Expectations is imported, quietly.

GX logs a flood of INFO lines when Airflow configures logging and phones home unless told not to, so the
logger level and `GX_ANALYTICS_ENABLED` are set before the import. Contexts are ephemeral: validating writes
no files. The import costs about 5 s, so only the GX engine and Data Docs import this module.
"""

from __future__ import annotations

import logging
import os

logging.getLogger("great_expectations").setLevel(logging.WARNING)
os.environ["GX_ANALYTICS_ENABLED"] = "false"

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.core import (  # noqa: E402
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.data_context import EphemeralDataContext  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.render.renderer import ValidationResultsPageRenderer  # noqa: E402
from great_expectations.render.view import DefaultJinjaPageView  # noqa: E402


def _lower_module_loggers() -> None:
    """Some GX modules pin their own logger to INFO (one line per ephemeral context): lower those too."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        pinned_low = isinstance(logger, logging.Logger) and logging.NOTSET < logger.level < logging.WARNING
        if name.startswith("great_expectations.") and pinned_low:
            logger.setLevel(logging.WARNING)


def ephemeral_context() -> EphemeralDataContext:
    """An in-memory GX context with progress bars off."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


_lower_module_loggers()


__all__ = [
    "DefaultJinjaPageView",
    "ExpectationSuiteValidationResult",
    "ExpectationValidationResult",
    "ValidationResultsPageRenderer",
    "ephemeral_context",
    "gx",
    "gxe",
]
