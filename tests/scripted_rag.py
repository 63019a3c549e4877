"""A minimal scripted RAG QA run for the tests that drive a whole recipe through some
other door (the UI, the secrets scan): one passage, one question of each kind, an answer
for each (an abstention for the unanswerable one) and judges that support every answer,
so four examples are kept and every stage has work."""

from __future__ import annotations

import json
from pathlib import Path

from winnow.testing.llm_server import Rule, Script

KINDS = ("factual", "multi_hop", "numeric", "unanswerable")
PASSAGE = (
    "The Harbour Lighthouse of Vennmouth was completed in 1868 after four years of work. "
    "It stands 34 metres tall and was built from granite quarried on Skarra. Its first "
    "keeper, Agnes Holm, tended the light for 27 years."
)
# per run: questions (one per kind) + answers + one judge vote each
REQUESTS = 3 * len(KINDS)


def script(model: str = "test-model", api_key: str | None = None) -> Script:
    vote = json.dumps({"reasoning": "The answer restates the passage.", "supported": "yes"})
    rules = [
        Rule(pattern=r"You check answers for hallucinations", replies=[vote]),
        Rule(pattern=r"Question: \[unanswerable\]", replies=["The context does not say."]),
        Rule(pattern=r"Question: \[", replies=["It stands 34 metres tall."]),
        *[
            Rule(
                pattern=rf"one {k.replace('_', '-')} ",
                replies=[json.dumps({"question": f"[{k}] What does the passage say?"})],
            )
            for k in KINDS
        ],
    ]
    return Script(models=[model], rules=rules, api_key=api_key)


def documents(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lighthouse.txt").write_text(PASSAGE + "\n")
    return folder
