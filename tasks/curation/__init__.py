"""Curation: reusable steps that decide which generated records are worth training on.

Each step is a plain function over rows (a batch ``Stage`` or a whole-dataset
``GlobalStage``) with a pydantic config; a recipe uses one with a single line, e.g.::

    final = run.global_stage(
        semantic_dedup_stage(), judged.kept,
        SemanticDedupConfig(field="problem", threshold=0.9, score_field="judge.score"),
    )

and every rejected row is recorded with the step's name and a reason.
"""

from tasks.curation.balance import (
    ClassBalanceConfig,
    class_balance,
    class_balance_stage,
    distribution,
)
from tasks.curation.contamination import (
    ContaminationConfig,
    ContaminationError,
    contamination_batch,
    contamination_stage,
)
from tasks.curation.exact import ExactDedupConfig, exact_dedup, exact_dedup_stage
from tasks.curation.ifd import (
    IFDConfig,
    ifd_score_batch,
    ifd_score_stage,
    ifd_select,
    ifd_select_stage,
)
from tasks.curation.judges import JudgeCommitteeConfig, judge_committee_batch, judge_committee_stage
from tasks.curation.minhash import MinHashDedupConfig, minhash_dedup, minhash_dedup_stage
from tasks.curation.phrases import (
    DEFAULT_PHRASES,
    PhraseBalanceConfig,
    phrase_balance,
    phrase_balance_stage,
)
from tasks.curation.quantile import QualityQuantileConfig, quality_quantile, quality_quantile_stage
from tasks.curation.rounds import RoundParams
from tasks.curation.semantic import SemanticDedupConfig, semantic_dedup_stage
from tasks.curation.utility import (
    UtilityConfig,
    utility_score_batch,
    utility_score_stage,
    utility_select,
    utility_select_stage,
)

__all__ = [
    "DEFAULT_PHRASES",
    "ClassBalanceConfig",
    "ContaminationConfig",
    "ContaminationError",
    "ExactDedupConfig",
    "IFDConfig",
    "JudgeCommitteeConfig",
    "MinHashDedupConfig",
    "PhraseBalanceConfig",
    "QualityQuantileConfig",
    "RoundParams",
    "SemanticDedupConfig",
    "UtilityConfig",
    "class_balance",
    "class_balance_stage",
    "contamination_batch",
    "contamination_stage",
    "distribution",
    "exact_dedup",
    "exact_dedup_stage",
    "ifd_score_batch",
    "ifd_score_stage",
    "ifd_select",
    "ifd_select_stage",
    "judge_committee_batch",
    "judge_committee_stage",
    "minhash_dedup",
    "minhash_dedup_stage",
    "phrase_balance",
    "phrase_balance_stage",
    "quality_quantile",
    "quality_quantile_stage",
    "semantic_dedup_stage",
    "utility_score_batch",
    "utility_score_stage",
    "utility_select",
    "utility_select_stage",
]
