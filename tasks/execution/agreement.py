"""Dual agreement: judge the tests too, not only the code (CodeT, Chen et al. 2022).

A model that writes a wrong test and then revises only the code can never pass; one that
writes a wrong solution *and* matching wrong tests passes them. With N candidates of a
problem, each candidate's solution runs against every candidate's test cases. Solutions
that pass exactly the same cases agree; the largest agreement (more solutions, and more
cases, score higher: size × cases) is the consensus, when at least two independent
solutions form it. Its cases are the *agreed tests*. Then, for each candidate:

- a case of its own tests that the consensus solutions all fail is *suspect* (the test is
  more likely wrong than the code), and the revision prompt is told so;
- agreed cases from the other candidates that its solution fails are evidence that its
  code is wrong: they are run beside its own tests from now on, so a solution that only
  passes its own wrong tests is no longer kept;
- a revised test must still test: at least as many cases as before, each passed by the
  consensus solutions.

When no two solutions agree, nothing says which candidate is right. A candidate whose
solution fails a case that another candidate's solution passes is then *disputed*: its
code and some other candidate's code contradict each other on an input, and keeping both
keeps at least one wrong example (on HumanEval, such disputes were where every kept
failure came from). The execute stage rejects disputed candidates; an undisputed one (it
passes every case any solution passes) is kept as before.

One sandbox run per solution (every test block's cases run in it, each in its own
namespace, each caught on its own), so a problem costs N runs, not N². Python only.
"""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from dataclasses import dataclass, field

from tasks.sandbox.base import Limits, Sandbox

MARK = "@@winnow-agreement "

# Runs after the solution in one program: each block's setup, then each of its cases, in
# a fresh copy of the solution's namespace; prints which cases passed.
HARNESS = """

import json as _w_json
_w_blocks = {blocks!r}
_w_base = dict(globals())
_w_out = []
for _w_setup, _w_cases in _w_blocks:
    _w_ns = dict(_w_base)
    try:
        exec(_w_setup, _w_ns)
        _w_ready = True
    except BaseException:
        _w_ready = False
    _w_row = []
    for _w_case in _w_cases:
        try:
            if not _w_ready:
                raise RuntimeError("setup failed")
            exec(_w_case, _w_ns)
            _w_row.append(1)
        except BaseException:
            _w_row.append(0)
    _w_out.append(_w_row)
print("\\n{mark}" + _w_json.dumps(_w_out))
"""


@dataclass(frozen=True)
class CaseBlock:
    """A candidate's tests split into setup (imports, helpers, assignments) and cases
    (each top-level statement that checks something: an assert, a loop or a call)."""

    setup: str
    cases: tuple[str, ...]


def split_tests(tests: str) -> CaseBlock:
    """The cases of a test block; none when it does not parse."""
    try:
        tree = ast.parse(tests)
    except (SyntaxError, ValueError):
        return CaseBlock("", ())
    setup: list[str] = []
    cases: list[str] = []
    for node in tree.body:
        source = ast.get_source_segment(tests, node) or ""
        checks = isinstance(node, ast.Assert | ast.Expr | ast.For | ast.While | ast.With | ast.If)
        (cases if checks else setup).append(source)
    return CaseBlock("\n".join(setup), tuple(cases))


def agreement_program(solution: str, blocks: list[CaseBlock]) -> str:
    listed = [(b.setup, list(b.cases)) for b in blocks]
    return solution + HARNESS.format(blocks=listed, mark=MARK)


def read_passes(stdout: str, blocks: list[CaseBlock]) -> list[list[int]]:
    """Which cases a run passed; all failed when it printed nothing usable (it crashed,
    hung or exited before the harness)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            try:
                rows = json.loads(line[len(MARK) :])
            except json.JSONDecodeError:
                break
            if [len(r) for r in rows] == [len(b.cases) for b in blocks]:
                return rows
            break
    return [[0] * len(b.cases) for b in blocks]


Cell = tuple[int, int]  # (candidate whose tests, case index)


@dataclass
class Agreement:
    """The outcome for one problem's candidates (indices into its list)."""

    blocks: list[CaseBlock]
    passes: list[set[Cell]]  # passes[j]: the cases solution j passed
    consensus: list[int] = field(default_factory=list)  # solutions that agree (≥ 2)
    agreed: set[Cell] = field(default_factory=set)

    @property
    def decided(self) -> bool:
        return len(self.consensus) >= 2 and bool(self.agreed)

    def suspect_cases(self, c: int) -> list[str]:
        """Candidate ``c``'s own cases that every consensus solution fails."""
        if not self.decided:
            return []
        return [case for k, case in enumerate(self.blocks[c].cases) if (c, k) not in self.agreed]

    def agreed_from_others(self, c: int) -> list[str]:
        """Agreed cases of the other candidates that need no setup of theirs (plain
        statements, runnable beside any solution), without repeats of ``c``'s own."""
        if not self.decided:
            return []
        own = set(self.blocks[c].cases)
        out: list[str] = []
        for i, k in sorted(self.agreed):
            case = self.blocks[i].cases[k]
            if i != c and not self.blocks[i].setup.strip() and case not in own and case not in out:
                out.append(case)
        return out

    def disputed_cases(self, c: int) -> list[str]:
        """With no consensus, the other candidates' cases that some other solution passes
        and candidate ``c``'s solution fails."""
        if self.decided or len(self.passes) < 2:
            return []
        others = set().union(*(p for j, p in enumerate(self.passes) if j != c))
        return [self.blocks[i].cases[k] for i, k in sorted(others - self.passes[c]) if i != c]

    def evidence(self, c: int) -> str:
        """What the revision prompt is told about candidate ``c``'s code and tests."""
        if not self.decided:
            return ""
        n, agree = len(self.passes), len(self.consensus)
        lines = [
            f"Evidence from {n} independent solutions of this problem ({agree} of them agree "
            f"on {len(self.agreed)} test cases):"
        ]
        suspect = self.suspect_cases(c)
        if suspect:
            lines.append(
                "These of your test cases fail on every agreeing solution, so the test is "
                "more likely wrong than the code; fix the expected value if so:"
            )
            lines += [f"  {case}" for case in suspect]
        missed = [
            self.blocks[i].cases[k]
            for i, k in sorted(self.agreed)
            if i != c and (i, k) not in self.passes[c]
        ]
        if missed:
            lines.append("Your solution fails these test cases that the agreeing solutions pass:")
            lines += [f"  {case}" for case in missed[:8]]
        if c in self.consensus:
            lines.append("Your solution is one of the agreeing ones.")
        return "\n".join(lines)


def decide(passes: list[set[Cell]], blocks: list[CaseBlock]) -> Agreement:
    """The consensus: solutions grouped by the exact set of cases they pass, each group
    scored by its size times its number of cases; the best group with ≥ 2 solutions."""
    groups: dict[frozenset[Cell], list[int]] = defaultdict(list)
    for j, passed in enumerate(passes):
        groups[frozenset(passed)].append(j)
    agreement = Agreement(blocks=blocks, passes=passes)
    ranked = sorted(
        ((len(js) * len(cells), len(js), cells, js) for cells, js in groups.items() if cells),
        key=lambda g: (g[0], g[1], len(g[2])),
        reverse=True,
    )
    if ranked and ranked[0][1] >= 2:
        _, _, cells, js = ranked[0]
        agreement.consensus, agreement.agreed = sorted(js), set(cells)
    return agreement


def cross_run(
    solutions: list[str], tests: list[str], sandbox: Sandbox, limits: Limits
) -> Agreement:
    """Run every solution against every candidate's test cases (one sandbox run per
    solution) and decide."""
    blocks = [split_tests(t) for t in tests]
    passes: list[set[Cell]] = []
    for solution in solutions:
        verdict = sandbox.run(
            {"main.py": agreement_program(solution, blocks)}, ["python3", "-B", "main.py"], limits
        )
        rows = read_passes(verdict.stdout, blocks)
        passes.append({(i, k) for i, row in enumerate(rows) for k, ok in enumerate(row) if ok})
    return decide(passes, blocks)


def revised_tests_problem(
    before: str, after: str, consensus_solutions: list[str], sandbox: Sandbox, limits: Limits
) -> str | None:
    """Why revised tests are not acceptable, or None: they must have at least as many
    cases as before and each must pass on the consensus solutions (a revision may correct
    an expected value, not drop or weaken the checks)."""
    old, new = split_tests(before), split_tests(after)
    if len(new.cases) < len(old.cases):
        return f"revised tests are weaker: {len(new.cases)} cases where there were {len(old.cases)}"
    changed = CaseBlock(new.setup, tuple(c for c in new.cases if c not in old.cases))
    if not changed.cases:
        return None
    for solution in consensus_solutions[:2]:
        verdict = sandbox.run(
            {"main.py": agreement_program(solution, [changed])},
            ["python3", "-B", "main.py"],
            limits,
        )
        [row] = read_passes(verdict.stdout, [changed])
        failed = [case for case, ok in zip(changed.cases, row, strict=True) if not ok]
        if failed:
            return f"revised test fails on the agreeing solutions: {failed[0]}"
    return None
