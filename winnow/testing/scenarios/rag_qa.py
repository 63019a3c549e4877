"""RAG QA, small: one passage, four questions (one of each kind in the default mix), one
ChainPoll judge: a supported answer kept, an abstention on the unanswerable question
kept, an answerable question declined, an unsupported answer filtered out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from winnow.testing.llm_server import Rule, Script
from winnow.testing.scenarios import Scenario, served_by

PASSAGE = (
    "[P1] The Harbour Lighthouse of Vennmouth was completed in 1868 after four years of "
    "work. It stands 34 metres tall and was built from granite quarried on Skarra. Its "
    "first keeper, Agnes Holm, tended the light for 27 years."
)
JUDGE = r"You check answers for hallucinations.*"
KINDS = ("factual", "multi_hop", "numeric", "unanswerable")


def _vote(supported: bool) -> str:
    return json.dumps({"reasoning": "compared", "supported": "yes" if supported else "no"})


def script() -> Script:
    rules = [
        Rule(pattern=JUDGE + r"\[multi_hop\]", replies=[_vote(False)]),
        Rule(pattern=JUDGE, replies=[_vote(True)]),
        Rule(pattern=r"Question: \[factual\]", replies=["It stands 34 metres tall."]),
        Rule(pattern=r"Question: \[multi_hop\]", replies=["Robert Stevenson designed it."]),
        Rule(pattern=r"Question: \[numeric\]", replies=["The context does not say."]),
        Rule(pattern=r"Question: \[unanswerable\]", replies=["The context does not say."]),
        *[
            Rule(
                pattern=rf"Write one {k.replace('_', '-')} ",
                replies=[json.dumps({"question": f"[{k}] What does the passage say?"})],
            )
            for k in KINDS
        ],
    ]
    return Script(rules=rules)


def params(work: Path, base_url: str) -> dict[str, Any]:
    docs = work / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "lighthouse.md").write_text(PASSAGE + "\n")
    return {
        **served_by(base_url, work),
        "documents": str(docs),
        "questions_per_passage": 4,
        "judges": 1,
        "shard_size": 2,
    }


SCENARIO = Scenario(
    recipe="rag-qa",
    script=script,
    params=params,
    funnel={
        "passages": (1, 1, 0),
        "questions": (4, 4, 0),
        "answers": (4, 3, 1),  # the numeric question declined
        "adherence": (3, 3, 0),
        "filter": (3, 2, 1),  # the multi-hop answer is not in the passage
    },
    kept=2,
)
