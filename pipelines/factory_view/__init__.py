"""The factory view: one page per registered model in the Airflow UI (pure part: no Airflow, no network).

The Airflow plugin (`plugins/factory_view_plugin.py`) fetches the records each panel needs from MLflow, S3 and
Redis (`plugins/factory_providers/view/collect.py`); everything that happens to them after that lives here, so
it is unit-tested without services:

- `records`: the fetched inputs, the parsing of stored JSON into the project's record types (a broken file
  becomes a named error for its panel, never an exception for the page), and `FetchError`;
- `links`: where things are in the Airflow UI (DAG runs named in the alias log's `actor`), in the plugin's
  own routes (reports served from S3 and MLflow) and in MLflow;
- `view`: the per-model summary (aliases, history, versions with gate verdicts, rollout, traffic split,
  drift) assembled from those records, as a JSON-able model the JSON endpoint returns as is;
- `render`: the server-rendered HTML of the pages, every value escaped.
"""
