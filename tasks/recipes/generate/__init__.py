"""The generate recipe's building blocks (its DAG is in flows/generate.py)."""
