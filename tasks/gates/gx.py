"""Running a suite on a stage's output with Great Expectations 1.x, and enforcing it.

GX costs seconds and hundreds of MB to import, so it is imported on the first
``validate`` and one ephemeral context (pandas data source, one whole-frame batch
definition) serves the whole process. Its progress bars are switched off in that context.
GX isn't thread-safe, and Prefect runs tasks in threads, so validations are serialised.

Empty frames: value-level expectations hold vacuously on 0 rows (GX's behaviour), so a
stage that kept nothing passes them; a suite that must see rows says so with
``expect_table_row_count_to_be_between`` (``min_value: 1``). An expectation on a column
the frame doesn't have fails, with GX's "column ... does not exist" as its ``exception``
(an empty stage output read from shards has no columns at all, so it fails such
expectations: a gate never passes a stage it could not look at).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from tasks.core.records import content_hash
from tasks.gates.suites import Severity, SuiteError, SuiteSpec, load_suite

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MAX_EXAMPLES = 10  # unexpected values kept per failed expectation
_OBSERVED_KEYS = (
    "observed_value",
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "details",
)


class GateResult(BaseModel):
    """The outcome of one suite on one frame, JSON-safe (stored in the catalog)."""

    suite: str
    severity: Severity
    success: bool
    n_expectations: int
    n_failed: int
    n_rows: int = 0
    columns: list[str] = Field(default_factory=list)  # the frame's, to read failures against
    failures: list[dict[str, Any]] = Field(default_factory=list)
    # the observed values of the expectations that passed and report one (a row count, a
    # mean, a share...): what a gate's artifact shows beside its failures
    observed: list[dict[str, Any]] = Field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> str:
        state = "passed" if self.success else "FAILED"
        head = (
            f"suite {self.suite} ({self.severity}) {state}: "
            f"{self.n_failed}/{self.n_expectations} expectations failed on {self.n_rows} rows"
        )
        lines = [head]
        if not self.success:
            lines.append(f"  columns: {', '.join(self.columns) or '(none)'}")
        for f in self.failures:
            what = f.get("exception") or {
                k: v for k, v in (f.get("observed") or {}).items() if k != "partial_unexpected"
            }
            lines.append(f"  - {f['expectation']} {f['kwargs']}: {what}")
        return "\n".join(lines)


class GateFailed(RuntimeError):
    """A critical suite failed: downstream stages must not run on this output."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.summary())
        self.result = result


class _GX:
    """The process's one GX context and the objects built on it."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # GX imports sre_* modules
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        for name in ("great_expectations", "great_expectations.data_context.types.base"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        source = self.context.data_sources.add_pandas("winnow")
        asset = source.add_dataframe_asset("frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self.definitions: dict[str, Any] = {}

    def definition(self, spec: SuiteSpec) -> Any:
        """A ValidationDefinition for ``spec``, built once per distinct suite content."""
        key = content_hash(spec.model_dump(mode="json"), 16)
        found = self.definitions.get(key)
        if found is None:
            suite = self.context.suites.add(build_gx_suite(spec, name=f"{spec.name}-{key}"))
            found = self.gx.ValidationDefinition(
                name=f"{spec.name}-{key}", data=self.batch_definition, suite=suite
            )
            self.definitions[key] = found
        return found


_lock = threading.Lock()
_state: _GX | None = None


def _gx() -> _GX:
    global _state
    if _state is None:
        _state = _GX()
    return _state


def prepare() -> None:
    """Import GX and build its context now (a gate worker does it as it starts)."""
    with _lock:
        _gx()


def build_gx_suite(spec: SuiteSpec, name: str | None = None) -> Any:
    """The GX ``ExpectationSuite`` for ``spec`` (imports GX; validates every kwarg).

    Each expectation is first built on its own class, which raises on an unknown type or
    bad kwargs: given a bad expectation, ``ExpectationSuite`` itself only logs and drops
    it, and a gate that silently checks less than its file says is worse than none.
    """
    from great_expectations.core import ExpectationSuite
    from great_expectations.expectations.registry import get_expectation_impl

    for i, expectation in enumerate(spec.expectations):
        try:
            get_expectation_impl(expectation.type)(**expectation.kwargs)
        except Exception as exc:  # ExpectationNotFoundError, pydantic errors, ...
            raise SuiteError(
                f"{spec.source or spec.name}: expectation {i} ({expectation.type}): {exc}"
            ) from exc
    suite = ExpectationSuite(
        name=name or spec.name,
        expectations=[e.to_gx() for e in spec.expectations],
        meta={**spec.meta, "severity": spec.severity, "description": spec.description},
    )
    if len(suite.expectations) != len(spec.expectations):
        raise SuiteError(
            f"{spec.source or spec.name}: GX kept {len(suite.expectations)} of "
            f"{len(spec.expectations)} expectations"
        )
    return suite


def _jsonable(value: Any) -> Any:
    """GX results hold NaN, numpy scalars and the like: make them plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _failure(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    observed = {k: result.result[k] for k in _OBSERVED_KEYS if k in (result.result or {})}
    if "partial_unexpected_list" in (result.result or {}):
        observed["partial_unexpected"] = result.result["partial_unexpected_list"][:MAX_EXAMPLES]
    exception = None
    for info in _exception_infos(result.exception_info):
        if info.get("raised_exception"):
            exception = info.get("exception_message") or "raised an exception"
            break
    return _jsonable(
        {"expectation": config.type, "kwargs": kwargs, "observed": observed, "exception": exception}
    )


def _has_observed(result: Any) -> bool:
    return "observed_value" in (result.result or {})


def _observed(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    return _jsonable(
        {
            "expectation": config.type,
            "kwargs": kwargs,
            "observed_value": result.result["observed_value"],
        }
    )


def _exception_infos(info: Any) -> list[dict[str, Any]]:
    """GX gives one info dict, or a dict of them keyed by metric id."""
    if not isinstance(info, dict):
        return []
    if "raised_exception" in info:
        return [info]
    return [v for v in info.values() if isinstance(v, dict)]


def validate(frame: pd.DataFrame, suite: str | SuiteSpec) -> GateResult:
    """Run ``suite`` (a name in ``expectations/`` or a loaded spec) on ``frame``."""
    spec = load_suite(suite) if isinstance(suite, str) else suite
    started = time.perf_counter()
    with _lock:
        definition = _gx().definition(spec)
        outcome = definition.run(batch_parameters={"dataframe": frame})
    failures = [_failure(r) for r in outcome.results if not r.success]
    observed = [_observed(r) for r in outcome.results if r.success and _has_observed(r)]
    return GateResult(
        suite=spec.name,
        severity=spec.severity,
        success=bool(outcome.success),
        n_expectations=len(outcome.results),
        n_failed=len(failures),
        n_rows=len(frame),
        columns=[str(c) for c in frame.columns],
        failures=failures,
        observed=observed,
        duration_s=round(time.perf_counter() - started, 4),
    )


def enforce(result: GateResult) -> GateResult:
    """Raise ``GateFailed`` if a critical suite failed; log a failed warning suite."""
    if result.success:
        return result
    if result.severity == "critical":
        raise GateFailed(result)
    log.warning("%s", result.summary())
    return result


def gate(frame: pd.DataFrame, suite: str | SuiteSpec) -> GateResult:
    """``enforce(validate(frame, suite))``."""
    return enforce(validate(frame, suite))


def _deep_check(spec: SuiteSpec) -> list[str]:
    """Build every expectation with GX (imports it), which validates the kwargs too."""
    try:
        build_gx_suite(spec)
    except SuiteError as exc:
        return [str(exc)]
    except Exception as exc:  # GX raises many types; report them all the same way
        return [f"{spec.source or spec.name}: GX rejects the suite: {exc}"]
    return []


def check_suites(
    names: Iterable[str | SuiteSpec],
    directory: str | os.PathLike[str] | None = None,
    *,
    deep: bool = False,
) -> list[SuiteSpec]:
    """Load every suite a run will need, up front, and report all problems at once.

    Call this before the first paid request. ``deep=True`` also builds the expectations
    with GX (about 3 s for the import, once per process).
    """
    specs: list[SuiteSpec] = []
    problems: list[str] = []
    for item in names:
        try:
            spec = item if isinstance(item, SuiteSpec) else load_suite(item, directory)
        except SuiteError as exc:
            problems.append(str(exc))
            continue
        if deep:
            problems.extend(_deep_check(spec))
        specs.append(spec)
    if problems:
        raise SuiteError("\n".join(problems))
    return specs
