"""Human approval steps (Airflow 3 human-in-the-loop operators) configured from the factory's policies."""
