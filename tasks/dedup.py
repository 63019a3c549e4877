"""Exact deduplication: moved to :mod:`tasks.curation.exact`; kept here so flows that
import ``tasks.dedup`` keep working."""

from tasks.curation.exact import ExactDedupConfig, digest, exact_dedup, exact_dedup_stage, normalise

__all__ = ["ExactDedupConfig", "digest", "exact_dedup", "exact_dedup_stage", "normalise"]
