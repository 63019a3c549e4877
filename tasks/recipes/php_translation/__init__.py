"""The php translation recipe's building blocks (its DAG is in flows/php_translation.py)."""
