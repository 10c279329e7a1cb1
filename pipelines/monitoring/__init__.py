"""Production drift monitoring as pure logic: reference profiles, the fast drift check, the Evidently report.

Typical hourly use: `profile = ReferenceProfile.load(path)` (built once per champion with
`build_reference_profile`), then `detect_drift(profile, window, load_drift_policy(path))`.
"""

from pipelines.monitoring.drift import detect_drift
from pipelines.monitoring.policy import DriftPolicy, DriftPolicyError, Severity, load_drift_policy
from pipelines.monitoring.profile import ReferenceProfile, as_feature_spec, build_reference_profile
from pipelines.monitoring.report import DriftReport, FeatureDrift, Finding, SchemaFinding

__all__ = [
    "DriftPolicy",
    "DriftPolicyError",
    "DriftReport",
    "FeatureDrift",
    "Finding",
    "ReferenceProfile",
    "SchemaFinding",
    "Severity",
    "as_feature_spec",
    "build_reference_profile",
    "detect_drift",
    "load_drift_policy",
]
