"""Bulk generation through provider batch APIs (OpenAI Batch API, Anthropic Message
Batches): ``api`` is the contract, ``jobs`` submits, resumes and collects, and one adapter
per provider speaks its API."""
