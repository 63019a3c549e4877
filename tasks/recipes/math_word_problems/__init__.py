"""The math word problems recipe's building blocks (its DAG is in flows/math_word_problems.py)."""
