"""8. Labels a writer can read: on short topical paragraphs, is the topic named, and are the features listed
specific to the paragraph?

`benchmarks/data/topics.json` holds 52 paragraphs on 16 topics, written for Morph (not from the corpus), each
topic with the words that count as naming it: two per topic, and two more on each of the issue's ten topics
written later (2026-12-06) and never used to tune the ranking or the labels. For each paragraph, the top 5
paragraph features (as the panel and `morph analyze` list them) are taken: the topic is *named* when a word of
any of their labels is one of the topic's words; a listed feature is *specific* when the paragraphs it is
listed for are on at most two topics (the issue's "specific to one or two paragraphs" of ten paragraphs on
ten topics; until 2026-12-06, with two paragraphs a topic, it was "listed for at most two paragraphs", which
with four would count a feature listed for all four storm paragraphs as unspecific; that share is kept in
the figure's details). Each paragraph counts on its own. Deterministic: one run, no repeats.
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
    topics_of: dict[int, set[str]] = {}
    for row in rows:
        for f in row["features"]:
            topics_of.setdefault(f, set()).add(row["topic"])
    total = sum(len(row["features"]) for row in rows)
    specific = sum(1 for row in rows for f in row["features"] if len(topics_of[f]) <= 2)
    listed = Counter(f for row in rows for f in set(row["features"]))
    per_paragraph = sum(1 for row in rows for f in row["features"] if listed[f] <= 2)
    return {"rows": rows, "named": sum(r["named"] for r in rows) / len(rows),
            "specific": specific / max(1, total), "listed": total,
            "specific_per_paragraph": per_paragraph / max(1, total)}


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
    specific = figure("features_specific", "listed features specific to one or two topics",
                      [100 * result["specific"]], unit="%", target=(">=", 70), listed=result["listed"],
                      listed_for_at_most_two_paragraphs=round(100 * result["specific_per_paragraph"], 1))
    for fig in (named, specific):
        fig.benchmark = NAME
    return [named, specific]
