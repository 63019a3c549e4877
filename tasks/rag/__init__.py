"""The RAG QA recipe (seed 004): contexts → questions of several kinds → answers →
context adherence (ChainPoll) → filter → publish. The DAG is in ``flows/rag_qa.py``."""
