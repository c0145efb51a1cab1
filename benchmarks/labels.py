"""8. Labels a writer can read: on short topical paragraphs, is the topic named, and are the features listed
specific to the paragraph?

`benchmarks/data/topics.json` holds 32 paragraphs on 16 topics, written for Morph (not from the corpus), each
topic with the words that count as naming it. For each paragraph, the top 5 paragraph features (as the panel
and `morph analyze` list them) are taken: the topic is *named* when a word of any of their labels is one of
the topic's words; a listed feature is *specific* when it is listed for at most two of the 32 paragraphs.
Each of the two paragraphs of a topic counts on its own. Deterministic: one run, no repeats.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from benchmarks.common import Context, Figure, figure

NAME = "labels"
TOPICS = Path(__file__).resolve().parent / "data" / "topics.json"
TOP = 5


def measure(engine, topics: list[dict]) -> dict:
    """Per paragraph: its topic, the listed features and their labels, and whether the topic was named."""
    rows = []
    for topic in topics:
        for paragraph in topic["paragraphs"]:
            analysis = engine.analyze(paragraph)
            features = [f.id for f in analysis.summary(0, TOP).features[:TOP]]
            labels = [engine.label(f) for f in features]
            words = {w for label in labels for w in re.findall(r"[a-z']+", label.lower())}
            rows.append({"topic": topic["topic"], "features": features, "labels": labels,
                         "named": bool(words & set(topic["names"]))})
    listed = Counter(f for row in rows for f in set(row["features"]))
    total = sum(len(row["features"]) for row in rows)
    specific = sum(1 for row in rows for f in row["features"] if listed[f] <= 2)
    return {"rows": rows, "named": sum(r["named"] for r in rows) / len(rows),
            "specific": specific / max(1, total), "listed": total}


def run(ctx: Context) -> list[Figure]:
    from morph.features.engine import Engine

    engine = Engine(ctx.load(), ctx.analysis_config())
    topics = json.loads(TOPICS.read_text())["topics"]
    if ctx.mode == "smoke":
        topics = topics[:2]
    result = measure(engine, topics)
    examples = {r["topic"]: r["labels"][:3] for r in result["rows"][::2]}
    named = figure("topic_named", f"topic named by a top-{TOP} paragraph label ({len(result['rows'])} paragraphs)",
                   [100 * result["named"]], unit="%", target=(">=", 80), examples=examples)
    specific = figure("features_specific", "listed features specific to one or two paragraphs",
                      [100 * result["specific"]], unit="%", target=(">=", 70), listed=result["listed"])
    for fig in (named, specific):
        fig.benchmark = NAME
    return [named, specific]
