"""Serving the recipes as Prefect deployments: the declared deployments (infra/prefect.yaml),
a local Prefect server when none is configured, and the serve loop."""
