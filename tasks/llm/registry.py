"""Provider kinds -> adapter classes. The one place that knows which adapters exist."""

from __future__ import annotations

from collections.abc import Callable

from tasks.llm.base import PROVIDER_KINDS, ConfigError, Provider, ProviderSpec


def _openai(spec: ProviderSpec) -> Provider:
    from tasks.llm.openai_provider import OpenAIProvider

    return OpenAIProvider(spec)


def _anthropic(spec: ProviderSpec) -> Provider:
    from tasks.llm.anthropic_provider import AnthropicProvider

    return AnthropicProvider(spec)


def _local(spec: ProviderSpec) -> Provider:
    from tasks.llm.local_provider import LocalProvider

    return LocalProvider(spec)


# Imported lazily: the local adapter pulls llama.cpp, the others their SDKs.
PROVIDERS: dict[str, Callable[[ProviderSpec], Provider]] = {
    "local": _local,
    "openai": _openai,
    "openai-compatible": _openai,
    "anthropic": _anthropic,
}
assert set(PROVIDERS) == set(PROVIDER_KINDS)


def validate_kind(kind: str) -> str:
    if kind not in PROVIDERS:
        raise ConfigError(
            f"unknown LLM provider {kind!r}; choose one of: {', '.join(PROVIDER_KINDS)}"
        )
    return kind


def make_provider(spec: ProviderSpec) -> Provider:
    return PROVIDERS[validate_kind(spec.kind)](spec)
