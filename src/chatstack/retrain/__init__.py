"""The weekly retraining: feedback export → DPO → A/B eval against the served model → register if better.

`plan.py` turns a `RetrainConfig` into the exact CLI commands, `runner.py` runs them in
order (or one of them: each Airflow task of orchestration/dags/weekly_retrain.py runs one
step through `chatstack retrain --step NAME`), `cli.py` is `chatstack retrain`.
"""
