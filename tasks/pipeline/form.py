"""A recipe's parameters as a form a person can fill in the Prefect UI.

Prefect builds the run form from the JSON schema of the flow's parameters. Pydantic's
schema lists fields in the order the mixins were combined (runtime first) and titles
them from their names ("Llm Timeout S"). This hook, applied to every recipe's parameter
model, orders the fields by group (the groups a person changes first at the top: inputs
and outputs, models, generation, verification, curation, runtime), names each group
before its field's description, gives every field a written title, and states where a
relative output location lands. Only the schema changes: the fields, their names (the
contract of ``--set`` and deployments) and their validation stay as they are.

A field typed ``X | None = None`` (None: "off", or "fall back to another field") would
show a "None" toggle ("Property is type None") and, for a provider, a free-text branch
beside the dropdown. The form shows it as a plain ``X`` field without a default instead:
left empty, the UI omits it and the model's None applies; its description says what
that means. Prefect builds the flow's top-level default from the model instance, Nones
included; ``deployment_schema`` drops those, so the form never starts with a null.

Groups cannot be collapsed in Prefect 3.8's form: the bundled UI (v1, and the opt-in v2)
sorts a model's fields by ``position`` and shows a nested model as an always-open card;
it honours no collapse keyword. Nesting would also rename the fields (``models.judge``),
breaking ``--set``. So the groups are ordered, runtime last, and named in each field.
"""

from __future__ import annotations

from typing import Any

from tasks.core.paths import project_dir

GROUPS = (
    "Inputs and outputs",
    "Models",
    "Generation",
    "Verification",
    "Curation",
    "Runtime",
)
INPUTS = (
    "out documents document_field topics problems problem_field limit seeds n_synthetic "
    "max_passages source license language"
)
MODELS = (
    "provider model base_url api_key_secret judge_provider judge_model judge_base_url "
    "judge_api_key_secret"
)
VERIFICATION = (
    "sandbox timeout_s memory_mb judge adherence_method judges threshold probability_threshold "
    "grounding_min_share judge_max_tokens mix_tolerance dual_agreement min_tests"
)
CURATION = (
    "contamination_against near_dup_threshold semantic_dedup_threshold ifd_max "
    "ifd_top_fraction utility_dev utility_top_fraction rubric_feedback"
)
RUNTIME = (
    "task_runner dask_address dask_workers ray_address storage shard_size preview min_kept "
    "concurrency max_retries llm_timeout_s llm_max_outage_s batch batch_poll_s batch_max_wait_h"
)
GROUP_OF = {
    name: group
    for group, names in zip(
        ("Inputs and outputs", "Models", "Verification", "Curation", "Runtime"),
        (INPUTS, MODELS, VERIFICATION, CURATION, RUNTIME),
        strict=True,
    )
    for name in names.split()
}
TITLES = {
    "out": "Output directory",
    "documents": "Documents",
    "document_field": "Text field of a document table",
    "topics": "Topics",
    "n_synthetic": "Synthetic passages",
    "max_passages": "Most passages",
    "license": "Dataset license",
    "language": "Dataset languages",
    "problems": "Your own problems",
    "problem_field": "Problem field",
    "limit": "Most problems read",
    "provider": "Provider",
    "model": "Model",
    "base_url": "Base URL",
    "api_key_secret": "API key secret block",
    "judge_provider": "Judge provider",
    "judge_model": "Judge model",
    "judge_base_url": "Judge base URL",
    "judge_api_key_secret": "Judge API key secret block",
    "sandbox": "Sandbox",
    "timeout_s": "Time per execution (s)",
    "memory_mb": "Memory per execution (MB)",
    "judges": "Judgements per answer",
    "threshold": "Lowest adherence kept",
    "grounding_min_share": "Grounding: least share of words from the context",
    "judge_max_tokens": "Judge's output tokens",
    "mix_tolerance": "Question mix tolerance",
    "contamination_against": "Contamination check against",
    "near_dup_threshold": "Near-duplicate threshold",
    "semantic_dedup_threshold": "Semantic dedup threshold",
    "ifd_max": "Highest IFD kept",
    "ifd_top_fraction": "IFD: share kept",
    "utility_dev": "Utility: dev set",
    "utility_top_fraction": "Utility: share kept",
    "task_runner": "Task runner",
    "dask_address": "Dask scheduler address",
    "dask_workers": "Dask workers",
    "ray_address": "Ray address",
    "storage": "Shard storage",
    "shard_size": "Records per task run",
    "preview": "Preview: inputs",
    "min_kept": "Fewest kept examples",
    "concurrency": "Requests in flight",
    "max_retries": "Retries of a request",
    "llm_timeout_s": "LLM request timeout (s)",
    "llm_max_outage_s": "LLM outage tolerated (s)",
    "batch": "Batch API",
    "batch_poll_s": "Batch: first poll wait (s)",
    "batch_max_wait_h": "Batch: longest wait (h)",
    "question_mix": "Question mix",
    "questions_per_passage": "Questions per passage",
    "chunk_words": "Words per passage",
    "chunk_overlap": "Words shared by passages",
    "seed": "Sampling seed",
}
WORDS = {"llm": "LLM", "url": "URL", "api": "API", "ifd": "IFD", "id": "ID", "php": "PHP"}
UNITS = {"s": "(s)", "h": "(h)", "mb": "(MB)"}


def title_of(name: str) -> str:
    """A written title: the table's, else the name in words ("n_tests" -> "Tests")."""
    if name in TITLES:
        return TITLES[name]
    words = name.split("_")
    if words[0] == "n" and len(words) > 1:
        words = words[1:]
    unit = UNITS.get(words[-1]) if len(words) > 1 else None
    if unit:
        words = words[:-1]
    text = " ".join(WORDS.get(w, w) for w in words)
    text = text[:1].upper() + text[1:]
    return f"{text} {unit}" if unit else text


def group_of(name: str) -> str:
    return GROUP_OF.get(name, "Generation")


def _rank(name: str, names: list[str]) -> int:
    """Within a group: the listed fields in the order listed, then the rest as declared."""
    listed = (INPUTS + " " + MODELS + " " + VERIFICATION + " " + CURATION + " " + RUNTIME).split()
    return listed.index(name) if name in listed else len(listed) + names.index(name)


def form_schema(schema: dict[str, Any], model: Any = None) -> None:
    """The hook (pydantic's ``json_schema_extra``): order, group and title the fields."""
    props: dict[str, Any] = schema.get("properties") or {}
    names = list(props)
    order = sorted(props, key=lambda n: (GROUPS.index(group_of(n)), _rank(n, names)))
    schema["properties"] = {}
    for position, name in enumerate(order):
        prop = _without_null(props[name])
        group = group_of(name)
        prop["title"] = title_of(name)
        described = prop.get("description", "")
        if name == "out":
            described += f"; a relative path is under {project_dir()}"
        prop["description"] = f"{group}: {described}" if described else group
        prop["position"] = position
        schema["properties"][name] = prop


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """``X | None = None`` as a plain ``X`` with no default (omitted: None); a union of
    several types keeps them all but the null. Any other field is left as it is."""
    branches = prop.get("anyOf") or []
    kept = [b for b in branches if b.get("type") != "null"]
    if len(kept) == len(branches) or prop.get("default", 0) is not None:
        return dict(prop)
    rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def deployment_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A flow's parameter schema as a deployment's form: the None fields of each
    parameter's default object dropped (the form would start them as null, which the
    form's own schema no longer allows, and the model applies None when they are left
    out). A copy; the definitions are shaped by ``form_schema`` already."""
    shaped = dict(schema)
    shaped["properties"] = {}
    for name, prop in (schema.get("properties") or {}).items():
        prop = dict(prop)
        if isinstance(prop.get("default"), dict):
            prop["default"] = {k: v for k, v in prop["default"].items() if v is not None}
        shaped["properties"][name] = prop
    return shaped
