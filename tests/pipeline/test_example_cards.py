"""Examples on a run's page read as dialogs and code, not raw JSON: each turn under its
role, code fenced with its language, short facts on one line, hashes left out."""

from __future__ import annotations

from tasks.pipeline.example_cards import example_markdown


def test_a_chat_example_reads_as_its_dialog() -> None:
    row = {
        "id": "ex-1",
        "messages": [
            {"role": "user", "content": "Write add(a, b)."},
            {"role": "assistant", "content": "```python\ndef add(a, b):\n    return a + b\n```"},
        ],
        "metadata": {
            "topic": "arithmetic",
            "request_hash": "f" * 64,
            "tests": "assert add(1, 2) == 3\nassert add(0, 0) == 0",
            "judge": {"verdict": "ok"},
        },
    }
    md = example_markdown(row)
    assert "**user**\n\n> Write add(a, b)." in md
    assert "**assistant**\n\n> ```python\n> def add(a, b):" in md
    assert "**topic**: arithmetic" in md and "**id**: ex-1" in md
    assert "f" * 64 not in md and "request_hash" not in md
    assert "*tests*\n\n```python\nassert add(1, 2) == 3" in md
    assert '*judge*: `{"verdict": "ok"}`' in md
    assert not md.lstrip().startswith("{")


def test_a_rejected_record_shows_its_text_and_its_code() -> None:
    record = {
        "id": "r-1",
        "problem": "Sum the numbers from 1 to n.\nn is given.",
        "solution": "<?php\nfunction f($n) { return $n; }",
        "stage_reason": "x",
    }
    md = example_markdown(record)
    assert "*problem*\n\n> Sum the numbers from 1 to n.\n> n is given." in md
    assert "*solution*\n\n```php\n<?php" in md
    long = example_markdown({"answer": "word " * 1000})
    assert long.endswith("…") and len(long) < 2000
