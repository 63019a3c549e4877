"""The PHP translation recipe's parts on plain data: reading sources (files, directories,
run ids, code SFT rows), tidying and counting PHP tests, the language-aware split, and
the shipped verified examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.core.jsonl import InputError
from tasks.execution.extract import split_solution_and_tests
from tasks.recipes.php_translation.inputs import (
    DEFAULT_SOURCE,
    DEFAULT_SOURCE_NAME,
    check_source,
    iter_examples,
    resolve_source,
    to_python_example,
)
from tasks.recipes.php_translation.recipe import php_problem, to_example
from tasks.recipes.php_translation.stages import FaithfulnessAnswer, php_assertions, tidy_php_tests
from winnow.cli import app

SFT_ROW = {
    "id": "p-1-s0",
    "messages": [
        {"role": "user", "content": "Write `inc(x: int) -> int` in Python."},
        {
            "role": "assistant",
            "content": "```python\ndef inc(x: int) -> int:\n    return x + 1\n```\n\nAdds one.",
        },
    ],
    "metadata": {"tests": "assert inc(1) == 2\n", "topic": "math", "difficulty": "easy"},
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_code_sft_rows_and_plain_rows_read_alike() -> None:
    sft = to_python_example(SFT_ROW, "x")
    assert sft.id == "php-p-1-s0" and sft.source_id == "p-1-s0"
    assert sft.problem == "Write `inc(x: int) -> int` in Python."
    assert sft.python_solution == "def inc(x: int) -> int:\n    return x + 1\n"
    assert sft.python_tests == "assert inc(1) == 2\n"
    assert (sft.topic, sft.difficulty) == ("math", "easy")

    plain = to_python_example(
        {"problem": sft.problem, "solution": sft.python_solution, "tests": sft.python_tests}, "x"
    )
    assert plain.python_solution == sft.python_solution
    assert plain.id.startswith("php-") and len(plain.source_id) == 12  # content hash


@pytest.mark.parametrize(
    ("row", "missing"),
    [
        ({"problem": "p", "solution": "def f(): pass"}, "no tests"),
        ({**SFT_ROW, "messages": [SFT_ROW["messages"][0]]}, "no solution"),
        ({"solution": "x", "tests": "  "}, "no problem, tests"),
    ],
)
def test_unreadable_rows_are_input_errors(row: dict, missing: str) -> None:
    with pytest.raises(InputError, match=f"f.jsonl: row 2: {missing}"):
        to_python_example(row, "f.jsonl: row 2")


def test_check_source_reads_every_row_and_refuses_duplicates(tmp_path: Path) -> None:
    rows = [{"id": str(i), "problem": "p", "solution": "s", "tests": "t"} for i in range(3)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    assert check_source(path) == 3
    assert check_source(path, limit=2) == 2
    assert [e.source_id for e in iter_examples(path, limit=2)] == ["0", "1"]
    write_jsonl(path, [*rows, rows[0]])
    with pytest.raises(InputError, match="row 4: duplicate id '0'"):
        check_source(path)
    path.write_text("")
    with pytest.raises(InputError, match="no rows"):
        check_source(path)


def test_plain_rows_come_from_any_table_and_name_their_row(tmp_path: Path) -> None:
    """A Parquet file and a saved datasets folder read like JSON Lines; a row without an
    id is named by its row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"problem": f"p{i}", "solution": "s", "tests": "t"} for i in range(3)]
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    assert [e.source_id for e in iter_examples(parquet)] == ["1", "2", "3"]
    assert check_source(parquet) == 3
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    assert resolve_source(str(folder)) == folder.resolve()
    assert [e.problem for e in iter_examples(resolve_source(str(folder)))] == ["p0", "p1", "p2"]


def test_source_resolves_a_file_a_directory_and_a_run_id(tmp_path: Path) -> None:
    from tasks.store.catalog import Catalog

    out = tmp_path / "out"
    out.mkdir()
    dataset = write_jsonl(out / "dataset.jsonl", [SFT_ROW])
    assert resolve_source(str(dataset)) == dataset
    assert resolve_source(str(out)) == dataset
    assert resolve_source(DEFAULT_SOURCE_NAME) == DEFAULT_SOURCE  # from any directory

    catalog = Catalog()
    catalog.start_run(run_id="code-sft-20260101-000000-abcdef", recipe="code-sft")
    catalog.finish_run("code-sft-20260101-000000-abcdef", status="completed", out_dir=str(out))
    catalog.start_run(run_id="code-sft-20260102-000000-123456", recipe="code-sft")
    assert resolve_source("code-sft-20260101-000000-abcdef") == dataset
    assert resolve_source("code-sft-20260101") == dataset  # a unique prefix
    with pytest.raises(InputError, match="no published dataset.jsonl"):
        resolve_source("code-sft-20260102")
    with pytest.raises(InputError, match="neither a file, a directory nor a run id"):
        resolve_source("no-such-run")
    with pytest.raises(InputError, match="has no dataset.jsonl and is no saved datasets"):
        resolve_source(str(tmp_path))


def test_tidy_php_tests_drops_what_breaks_once_appended() -> None:
    tests = (
        "<?php\ndeclare(strict_types=1);\nrequire_once 'solution.php';\n"
        "assert(f(1) === 2);\ninclude __DIR__ . '/x.php';\nassert(f(2) === 3);\n"
    )
    assert tidy_php_tests(tests) == "assert(f(1) === 2);\nassert(f(2) === 3);\n"


def test_php_assertions_ignore_commented_out_ones() -> None:
    tests = (
        "assert(f(1) === 2);\n// assert(f(2) === 3);\n# assert(f(3) === 4);\n"
        "/* assert(f(4) === 5);\n assert(f(5) === 6); */\nassert (f(0) === 1);\n"
    )
    assert php_assertions(tests) == 2


def test_php_answer_in_one_block_splits_at_the_first_assert() -> None:
    text = "```php\n<?php\nfunction f(int $x): int { return $x; }\n\nassert(f(1) === 1);\n```"
    code = split_solution_and_tests(text, "php")
    assert code.solution == "<?php\nfunction f(int $x): int { return $x; }\n"
    assert code.tests == "assert(f(1) === 1);\n"
    commented = "```php\n<?php\nfunction f() {}\n// Tests\nf();\n```"
    assert split_solution_and_tests(commented, "php").tests == "// Tests\nf();\n"


def test_faithfulness_answer_accepts_the_usual_spellings() -> None:
    answer = FaithfulnessAnswer(same_behaviour="Yes ", same_tests=False)  # type: ignore[arg-type]
    assert (answer.same_behaviour, answer.same_tests) == ("yes", "no")


def test_example_asks_in_php_and_answers_with_php() -> None:
    row = {
        "id": "php-a",
        "problem": "Write a Python function `inc`.",
        "solution": "<?php\nfunction inc(int $x): int { return $x + 1; }\n",
        "tests": "assert(inc(1) === 2);\n",
        "python_solution": "def inc(x): return x + 1\n",
        "python_tests": "assert inc(1) == 2\n",
    }
    example = to_example(row)
    user, assistant = example["messages"]
    assert user["content"] == "Write a PHP function `inc`.\n\nWrite the solution in PHP."
    assert assistant["content"].startswith("```php\n<?php\nfunction inc(")
    assert example["metadata"]["tests"] == row["tests"]
    assert php_problem("No language named.").endswith("in PHP.")


def test_shipped_examples_pass_winnow_verify_python() -> None:
    rows = [json.loads(line) for line in DEFAULT_SOURCE.read_text().splitlines()]
    assert 3 <= len(rows) <= 5
    result = CliRunner().invoke(
        app, ["verify", "--language", "python"], input=DEFAULT_SOURCE.read_text()
    )
    assert result.exit_code == 0, result.output
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["id"] for v in verdicts] == [r["id"] for r in rows]
    assert all(v["passed"] for v in verdicts), verdicts


FENCE = "```"


def test_php_asserts_left_in_the_solution_block_become_the_tests() -> None:
    solution = "<?php\nfunction f(int $x): int { return $x; }\n"
    asserts = "// Tests\nassert(f(1) === 1);\nassert(f(2) === 2);\n"
    text = (
        f"{FENCE}php\n{solution}\n{asserts}{FENCE}\n\n"
        f"{FENCE}php\n<?php\n// No additional tests needed\n{FENCE}"
    )
    code = split_solution_and_tests(text, "php")
    assert (code.solution, code.tests) == (solution, asserts)
    # A second block with more assertions wins; the two are never added up.
    richer = "assert(f(1) === 1);\nassert(f(2) === 2);\nassert(f(3) === 3);\n"
    code = split_solution_and_tests(
        f"{FENCE}php\n{solution}\n{asserts}{FENCE}\n{FENCE}php\n{richer}{FENCE}", "php"
    )
    assert (code.solution, code.tests) == (solution, richer)
    # Python answers keep the old behaviour: first block, second block.
    py = split_solution_and_tests(f"{FENCE}python\nx = 1\nassert x\n{FENCE}\n{FENCE}\ny\n{FENCE}")
    assert (py.solution, py.tests) == ("x = 1\nassert x\n", "y\n")
