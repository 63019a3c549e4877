"""Kill and resume: `winnow run code-sft` against the scripted test LLM server (a named
test double, in this process so its counts outlive every kill) is SIGKILLed again and
again — at a random moment while requests are being answered, after a sandbox shard ran,
inside a gate, between two files of a publish, right before the publish's swap — and
resumed each time. Then:

- the final dataset equals the one of an uninterrupted run in another project (same ids,
  same content; run ids and timestamps aside);
- no journaled request is ever sent again: a request the server receives in an attempt
  is never one the project's journal held when that attempt started. The only requests
  the server answers twice are those answered in a killed attempt but not yet in the
  journal when the kill came (in flight, or answered and not yet committed);
- at every kill, the output path holds nothing or a whole dataset (manifest = files).

The hook ``WINNOW_KILL_AT`` (``tasks/core/killpoints.py``) places the kills that timing alone
cannot promise to hit. A second test kills `winnow run rag-qa --set batch=true` mid-batch
(submitted to the batch API double, not ended) and checks the resume adopts that batch.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.faults_support import (
    answered,
    assert_complete_or_absent,
    code_sft_args,
    dataset_view,
    finish,
    journal_wire_keys,
    kill_group,
    received,
    settle,
    start_run,
    winnow_env,
)
from tests.recipes.test_code_sft_flow import script
from winnow.testing.llm_server import LLMTestServer

pytestmark = pytest.mark.slow


class Attempts:
    """Runs attempts on one project and keeps what the server saw during each."""

    def __init__(self, server: LLMTestServer, project: Path, api: str, out: Path) -> None:
        self.server, self.project, self.api, self.out = server, project, api, out
        self.args = code_sft_args(project.parent, server.base_url, out)
        self.log: list[dict] = []

    def run(self, kill_at: str | None = None, kill_after_answers: int | None = None) -> int:
        journal_before = journal_wire_keys(self.project, self.server.base_url)
        got_before, ans_before = received(self.server.stats), answered(self.server.stats)
        extra = {"WINNOW_KILL_AT": kill_at} if kill_at else {}
        proc = start_run(self.args, winnow_env(self.project, self.api, **extra))
        killed_by_test = False
        if kill_after_answers is not None:
            deadline = time.monotonic() + 300
            while sum((answered(self.server.stats) - ans_before).values()) < kill_after_answers:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.01)
            # answered by the server is not yet journaled by the client (the answer may
            # still be on its way): kill once the journal holds something new, so this
            # kill lands mid-stage rather than before the first answer is kept
            while not journal_wire_keys(self.project, self.server.base_url) - journal_before:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "nothing was ever journaled"
                time.sleep(0.02)
            kill_group(proc)
            killed_by_test = True
        code, _, err = finish(proc)
        settle(self.server.stats)
        sent = received(self.server.stats) - got_before
        resent = set(sent) & journal_before
        assert not resent, f"{len(resent)} journaled request(s) sent again"
        answers = answered(self.server.stats) - ans_before
        assert max(answers.values(), default=0) <= 1, "a request answered twice in one run"
        self.log.append(
            {
                "kill": kill_at or f"after {kill_after_answers} answers",
                "code": code,
                "answers": answers,
                "journal_after": journal_wire_keys(self.project, self.server.base_url),
            }
        )
        if kill_at or killed_by_test:
            assert code == -9, (code, err[-3000:])
        else:
            assert code == 0, err[-3000:]
        assert_complete_or_absent(self.out)
        return code


def test_killed_again_and_again_resumes_to_the_same_dataset(
    tmp_path: Path, prefect_api_url: str, code_sft_reference: dict
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"kill timing seed: {seed}")
    expected, ref_keys = code_sft_reference["view"], code_sft_reference["keys"]
    s = script()
    s.latency_ms = 60
    with LLMTestServer(s) as server:
        out = tmp_path / "out"
        runs = Attempts(server, tmp_path / "project", prefect_api_url, out)
        # 1. a random moment while problems and solutions are being answered
        runs.run(kill_after_answers=rng.randint(2, 12))
        assert 0 < len(runs.log[-1]["journal_after"]) < len(ref_keys)
        assert not out.exists()
        # 2. in the sandbox stage: a shard's code ran, its output is not written yet
        runs.run(kill_at="shard.execute")
        # 3. inside a gate
        runs.run(kill_at="gate.code_sft.executed")
        # 4. mid-publish, between two files: nothing may be visible yet
        runs.run(kill_at="publish.dataset.parquet")
        assert not out.exists()
        # 5. resumed to the end
        runs.run()
        assert dataset_view(out) == expected
        # 6. publishing again over the dataset, killed right before the swap: readers
        #    still see the previous whole dataset
        runs.run(kill_at="publish.swap")
        assert dataset_view(out) == expected
        runs.run()
        assert dataset_view(out) == expected
        assert not list(tmp_path.glob(".out.*")), "temp or aside directories left behind"

    # Every request was answered for this project; a request answered more than once was
    # answered in a killed attempt and missing from the journal after that kill.
    total: Counter[str] = Counter()
    for attempt in runs.log:
        total += attempt["answers"]
    assert set(total) == ref_keys
    for key, n in total.items():
        unjournaled_kills = sum(
            1
            for a in runs.log
            if a["code"] == -9 and key in a["answers"] and key not in a["journal_after"]
        )
        assert n <= 1 + unjournaled_kills, key
    # And the last run, with every stage done, sent nothing at all.
    assert not runs.log[-1]["answers"]


def test_killed_while_its_batch_runs_resumes_the_same_batch(
    tmp_path: Path, prefect_api_url: str
) -> None:
    """rag-qa through the OpenAI Batch API double: SIGKILLed mid-batch (submitted, polled,
    not ended), then resumed: it polls the batch it persisted instead of submitting it
    again, and publishes what an uninterrupted run publishes."""
    from tests.recipes.test_rag_qa_flow import documents
    from tests.recipes.test_rag_qa_flow import script as rag_script
    from winnow.testing.batch_server import BatchBehaviour, OpenAIBatchServer

    docs = documents(tmp_path)

    def args(url: str, out: Path) -> list[str]:
        sets = {"documents": docs, "questions_per_passage": 4, "judges": 3, "shard_size": 3}
        sets |= {"batch": "true", "batch_poll_s": 0.05}
        given = ["rag-qa", "--provider", "openai", "--base-url", url, "--model", "test-model"]
        given += ["--out", str(out)]
        for key, value in sets.items():
            given += ["--set", f"{key}={value}"]
        return given

    key = {"OPENAI_API_KEY": "test-key"}
    with OpenAIBatchServer(rag_script(), BatchBehaviour()) as ref_server:
        ref_out = tmp_path / "reference"
        env = winnow_env(tmp_path / "ref-project", prefect_api_url, **key)
        code, _, err = finish(start_run(args(ref_server.base_url, ref_out), env))
        assert code == 0, err[-3000:]
        ref_stats = ref_server.batch.batch_stats
    expected = dataset_view(ref_out)
    assert expected["dataset.jsonl"]

    project, out = tmp_path / "project", tmp_path / "out"
    env = winnow_env(project, prefect_api_url, **key)
    with OpenAIBatchServer(rag_script(), BatchBehaviour(hold=True)) as server:
        stats = server.batch.batch_stats
        proc = start_run(args(server.base_url, out), env)
        deadline = time.monotonic() + 300
        while stats.batches_created < 1 or stats.status_polls < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no batch was submitted"
            time.sleep(0.02)
        kill_group(proc)
        assert proc.returncode == -9
        assert list((project / ".winnow" / "batches").glob("*.json")), "batch id not persisted"
        assert not out.exists()
        server.batch.release()
        code, _, err = finish(start_run(args(server.base_url, out), env))
        assert code == 0, err[-3000:]
        assert stats.batches_created == ref_stats.batches_created  # resumed, not resubmitted
        assert stats.batched == ref_stats.batched  # every request batched as often as once
        assert server.stats.chat_requests == 0  # all of it through the batch API
    assert_complete_or_absent(out)
    assert dataset_view(out) == expected
