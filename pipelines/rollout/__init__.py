"""Progressive rollout and rollback decisions: pure policy, windowed guardrails and step plans (no I/O)."""
