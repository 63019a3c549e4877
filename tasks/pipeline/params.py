"""Parameters every recipe shares, as pydantic models a recipe's parameters mix in.

- ``RuntimeParams``: where shards run and live (task_runner, dask_address, storage...),
  how many records a task run carries, and ``preview`` (a few inputs, nothing published,
  the full run projected).
- ``ProviderParams``: the generator and the judge, each a provider and a model (the judge
  defaulting to the generator), their limits, and whether LLM stages go through the
  provider's batch API. It builds each LLM stage's configuration, so every recipe gets
  live or batch requests alike.
- ``CardParams``: the license and languages a published dataset's card declares.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.llm.base import ProviderKind, ProviderSpec
from tasks.llm.batch.api import BatchSettings, check_batch_support
from tasks.pipeline.form import form_schema
from tasks.pipeline.llm_stage import LLMConfig, llm_config

TaskRunnerKind = Literal["threads", "dask", "ray"]


class RuntimeParams(BaseModel):
    """Parameters every recipe shares about where it runs and where its shards live."""

    # every recipe's form in the UI: fields grouped, the first-changed groups on top
    model_config = ConfigDict(json_schema_extra=form_schema)

    task_runner: TaskRunnerKind = Field(
        "threads", description="where shards run: threads (this process), dask or ray"
    )
    dask_address: str | None = Field(
        None, description="scheduler of a running Dask cluster (default: a temporary one)"
    )
    dask_workers: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="workers of the temporary Dask cluster (default: Dask's, by cores)",
    )
    ray_address: str | None = Field(
        None, description="a running Ray cluster, e.g. ray://host:10001 (default: local)"
    )
    storage: str | None = Field(
        None,
        description="shard root: a directory or fsspec URL, e.g. s3://bucket/prefix "
        "(default: the project's .winnow)",
    )
    shard_size: int = Field(16, ge=1, le=100_000, description="records per task run")
    preview: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="preview: run only this many inputs through every stage, publish "
        "nothing, and project the full run's requests, tokens, cost and time (empty: a "
        "full run)",
    )
    min_kept: int = Field(
        1,
        ge=0,
        description="fewest kept examples for a successful run: below it the run publishes "
        "what it has, then fails (0: never fail for keeping too few)",
    )


def runtime_of(params: BaseModel) -> RuntimeParams:
    """The runtime part of any recipe's parameters (defaults for a model without it)."""
    if isinstance(params, RuntimeParams):
        return RuntimeParams(**{k: getattr(params, k) for k in RuntimeParams.model_fields})
    return RuntimeParams()


class ProviderParams(RuntimeParams):
    provider: ProviderKind = Field("local", description="generator provider")
    model: str = Field("", description="generator model (empty: the provider's default)")
    base_url: str | None = Field(
        None, description="generator server URL (openai-compatible; default: the provider's)"
    )
    concurrency: int = Field(16, ge=1, le=4096, description="max requests in flight")
    max_retries: int = Field(6, ge=0, le=50, description="retries of a failing request")
    judge_provider: ProviderKind | None = Field(
        None, description="judge provider (default: the generator's)"
    )
    judge_model: str | None = Field(None, description="judge model (default: the generator's)")
    judge_base_url: str | None = Field(
        None, description="judge server URL (default: the generator's)"
    )
    # Names of Prefect Secret blocks, never keys: parameters are stored and shown.
    api_key_secret: str | None = Field(
        None,
        description="name of a Prefect Secret block holding the generator's API key "
        "(default: the provider's environment variable, e.g. OPENAI_API_KEY)",
    )
    judge_api_key_secret: str | None = Field(
        None,
        description="name of a Prefect Secret block holding the judge's API key (default: "
        "the generator's, when the judge's provider is the same)",
    )
    llm_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="seconds before an LLM request is abandoned (retried)"
    )
    llm_max_outage_s: float = Field(
        120.0, gt=0, le=86400, description="seconds to wait for an LLM server that is down"
    )
    batch: bool = Field(
        False, description="send every LLM stage through the provider's batch API (~50% off)"
    )
    batch_poll_s: float = Field(30.0, gt=0, description="first wait between batch polls")
    batch_max_wait_h: float = Field(26.0, gt=0, description="stop waiting (resumable) after")

    def generator(self) -> ProviderSpec:
        return self._spec(self.provider, self.model, self.base_url, self.api_key_secret)

    def judge(self) -> ProviderSpec:
        """The judge's spec: any judge_* field left unset falls back to the generator's."""
        judge_fields = (
            self.judge_provider,
            self.judge_model,
            self.judge_base_url,
            self.judge_api_key_secret,
        )
        if all(f is None for f in judge_fields):
            return self.generator()
        return self._spec(
            self.judge_provider or self.provider,
            self.model if self.judge_model is None else self.judge_model,
            self.judge_base_url if self.judge_base_url is not None else self.base_url,
            self._judge_secret(),
        )

    def generator_llm(self, template: str, **overrides: Any) -> LLMConfig:
        """The configuration of an LLM stage that the generator answers."""
        return llm_config(self.generator(), template, batch=self.batch_settings(), **overrides)

    def judge_llm(self, template: str, **overrides: Any) -> LLMConfig:
        """The configuration of an LLM stage that the judge answers."""
        return llm_config(self.judge(), template, batch=self.batch_settings(), **overrides)

    def batch_settings(self) -> BatchSettings | None:
        """None for live requests. A preview asks live even when ``batch`` is on: it must
        answer in minutes, and its projection prices the full run at the batch discount
        (the full batch run then reuses the preview's journaled answers)."""
        if not self.batch or self.preview:
            return None
        return BatchSettings(
            poll_initial_s=self.batch_poll_s,
            poll_max_s=max(self.batch_poll_s, 300.0),
            max_wait_s=self.batch_max_wait_h * 3600,
        )

    def _spec(
        self, kind: ProviderKind, model: str, base_url: str | None, secret: str | None
    ) -> ProviderSpec:
        """A provider spec with the limits both roles share (concurrency, timeouts)."""
        return ProviderSpec(
            kind=kind,
            model=model,
            base_url=base_url,
            api_key_secret=secret,
            max_concurrency=self.concurrency,
            max_retries=self.max_retries,
            timeout_s=self.llm_timeout_s,
            max_outage_s=self.llm_max_outage_s,
        )

    def check_providers(self, judge: bool = True) -> None:
        """Ask the generator's and the judge's provider (once when they are the same)
        whether they answer, and whether they have a batch API when ``batch`` is on,
        before any paid request. ``judge=False``: the recipe asks no judge."""
        from tasks.llm.clients import client_for

        specs = [self.generator(), self.judge()] if judge else [self.generator()]
        if self.batch:
            for spec in specs:
                check_batch_support(spec)
        for spec in {s.model_dump_json(): s for s in specs}.values():
            client_for(spec).check()

    def _judge_secret(self) -> str | None:
        """The judge's own Secret block; the generator's only for the same provider."""
        if self.judge_api_key_secret is not None:
            return self.judge_api_key_secret
        same = self.judge_provider is None or self.judge_provider == self.provider
        return self.api_key_secret if same else None


class OwnProblemsParams(BaseModel):
    """A recipe that can take the user's own problems instead of generating them."""

    problems: str | None = Field(
        None,
        description="your own problems instead of generated ones: a JSON Lines, Parquet or "
        "CSV file, or a folder saved by datasets' save_to_disk (an 'id' field names the row)",
    )
    problem_field: str = Field("problem", description="the field of `problems` with the text")
    limit: int | None = Field(
        None, ge=1, description="read at most this many rows of `problems` (default: all)"
    )


class CardParams(BaseModel):
    """How a published dataset is labelled on the Hugging Face Hub."""

    license: str = Field(
        "unknown",
        description="license of the published dataset, as the Hub names it (e.g. apache-2.0, "
        "cc-by-4.0, mit); the generating models' terms may restrict it",
    )
    language: list[str] = Field(
        ["en"],  # a plain default (copied per instance), so the UI form shows it
        description='languages of the published dataset (ISO 639-1 codes), e.g. ["en"]',
    )

    @field_validator("language", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # --set language=en,fr
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


def card_params_of(params: BaseModel) -> CardParams:
    """The card part of any recipe's parameters (defaults for a model without it)."""
    if isinstance(params, CardParams):
        return CardParams(license=params.license, language=params.language)
    return CardParams()
