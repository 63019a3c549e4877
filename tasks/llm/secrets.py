"""Where an API key comes from: a Prefect Secret block named by the recipe's parameters
(``api_key_secret``), else an environment variable (``api_key_env`` or the provider's
usual one). Parameters carry names only, never a key: a key in a parameter would be
stored with the flow run, shown in the UI and written to the catalog.

The key is read once per process and kept in memory only; nothing here logs it.
"""

from __future__ import annotations

import os
import threading

from tasks.llm.base import ConfigError, ProviderSpec

_lock = threading.Lock()
_secrets: dict[str, str] = {}


def secret_value(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (read from the API once)."""
    with _lock:
        if name in _secrets:
            return _secrets[name]
    from prefect.blocks.system import Secret

    try:
        # _sync: providers ask from inside their event loop; a plain call would return
        # a coroutine there. This is one small blocking read per process.
        block = Secret.load(name, _sync=True)
    except ValueError as exc:
        raise ConfigError(f"no Prefect Secret block named {name!r}: {exc}") from None
    value = block.get()
    if not isinstance(value, str) or not value:
        raise ConfigError(f"the Prefect Secret block {name!r} holds no text key")
    with _lock:
        _secrets[name] = value
    return value


def api_key(spec: ProviderSpec, default_env: str | None) -> str | None:
    """The key for ``spec``, or None when it names none and ``default_env`` is unset.
    A named Secret block or variable that is missing is a ConfigError."""
    if spec.api_key_secret:
        return secret_value(spec.api_key_secret)
    env = spec.api_key_env or default_env
    if env is None:
        return None
    key = os.environ.get(env)
    if not key and spec.api_key_env:
        raise ConfigError(f"api_key_env={spec.api_key_env} is not set")
    return key or None


def forget() -> None:
    """Drop the keys read so far (tests)."""
    with _lock:
        _secrets.clear()


def anthropic_key(spec: ProviderSpec) -> str:
    key = api_key(spec, "ANTHROPIC_API_KEY")
    if not key:
        env = spec.api_key_env or "ANTHROPIC_API_KEY"
        raise ConfigError(f"no Anthropic API key: set {env} or name a Secret block")
    return key
