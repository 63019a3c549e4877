"""The code sft recipe's building blocks (its DAG is in flows/code_sft.py)."""
