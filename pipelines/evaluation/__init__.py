"""Evaluate a trained model: array metrics (`metrics`), the report record (`report`), PNG plots (`plots`)."""
