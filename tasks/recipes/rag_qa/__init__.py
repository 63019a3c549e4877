"""The rag qa recipe's building blocks (its DAG is in flows/rag_qa.py)."""
