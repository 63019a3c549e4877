"""The math word-problem recipe's building blocks (its DAG is in flows/math_word_problems.py)."""
