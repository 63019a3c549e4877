"""Parameters every LLM recipe shares: the generator and the judge, each a provider and a
model, the judge defaulting to the generator; and where shards run and live (from
``RuntimeParams``: task_runner, dask_address, storage...)."""

from __future__ import annotations

from pydantic import Field

from tasks.llm.base import ProviderKind, ProviderSpec
from tasks.runners import RuntimeParams


class ProviderParams(RuntimeParams):
    provider: ProviderKind = Field("local", description="generator provider")
    model: str = Field("", description="generator model (empty: the provider's default)")
    base_url: str | None = Field(None, description="generator server URL (openai-compatible)")
    concurrency: int = Field(16, ge=1, le=4096, description="max requests in flight")
    judge_provider: ProviderKind | None = Field(
        None, description="judge provider (default: the generator's)"
    )
    judge_model: str | None = Field(None, description="judge model (default: the generator's)")
    judge_base_url: str | None = Field(None, description="judge server URL")
    # Names of Prefect Secret blocks, never keys: parameters are stored and shown.
    api_key_secret: str | None = Field(
        None,
        description="name of a Prefect Secret block holding the generator's API key "
        "(default: the provider's environment variable, e.g. OPENAI_API_KEY)",
    )
    judge_api_key_secret: str | None = Field(
        None, description="name of a Prefect Secret block holding the judge's API key"
    )
    llm_timeout_s: float = Field(
        120.0, gt=0, le=3600, description="seconds before an LLM request is abandoned (retried)"
    )
    llm_max_outage_s: float = Field(
        120.0, gt=0, le=86400, description="seconds to wait for an LLM server that is down"
    )

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
            timeout_s=self.llm_timeout_s,
            max_outage_s=self.llm_max_outage_s,
        )

    def check_providers(self) -> None:
        """Ask the generator's and the judge's provider (once when they are the same)
        whether they answer, before any paid request."""
        from tasks.clients import client_for

        gen, judge = self.generator(), self.judge()
        for spec in {gen.model_dump_json(): gen, judge.model_dump_json(): judge}.values():
            client_for(spec).check()

    def _judge_secret(self) -> str | None:
        """The judge's own Secret block; the generator's only for the same provider."""
        if self.judge_api_key_secret is not None:
            return self.judge_api_key_secret
        same = self.judge_provider is None or self.judge_provider == self.provider
        return self.api_key_secret if same else None
