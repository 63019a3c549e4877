"""Whether a run kept enough to count as a success.

A run that keeps nothing has still published an output (so its rejections can be read),
but it has not done its job: below the recipe's ``min_kept`` the run fails, in Prefect
and at the command line, after publishing."""

from __future__ import annotations


class TooFewKept(RuntimeError):
    """The run kept fewer examples than ``min_kept``; what it made is published."""


def check_kept(n_kept: int, min_kept: int, out: str | None) -> None:
    """Raise TooFewKept when ``n_kept < min_kept``."""
    if n_kept >= min_kept:
        return
    where = f" (published to {out} for inspection: rejected.jsonl says why)" if out else ""
    raise TooFewKept(f"kept {n_kept} example(s), fewer than min_kept={min_kept}{where}")
