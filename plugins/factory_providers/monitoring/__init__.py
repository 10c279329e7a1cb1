"""Adapters of the production monitor: the reference (registry + S3 profile), the logged traffic window, and
the facts the guarded retraining decision reads. The decisions themselves are in `pipelines.monitoring`."""
