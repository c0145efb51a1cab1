"""Deterministic prose for the benchmarks: varied sentences from templates, so no two paragraphs repeat
(repeated blocks would be served from the analyzer's cache and flatter the figures)."""

from __future__ import annotations

import random

NAMES = ["Anna", "Tomas", "the miller", "Mrs. Hale", "the doctor", "her brother", "the captain", "Elise",
         "old Peter", "the clerk", "Jonah", "the widow", "Martha", "the boy", "the engineer", "Clara"]
PLACES = ["harbour", "station", "orchard", "library", "mill", "market", "chapel", "bridge", "kitchen",
          "garden", "square", "lighthouse", "river bank", "attic", "school", "ferry landing"]
TIMES = ["morning", "evening", "late afternoon", "first week of May", "long winter", "rain", "dark",
         "heat of August", "small hours", "autumn fair", "spring thaw", "quiet of Sunday"]
THINGS = ["the letter", "an old debt", "the war", "her mother's garden", "the price of bread", "a lost key",
          "the election", "the storm of 1887", "a promise", "the new railway", "the harvest", "a broken clock",
          "the journey north", "his first book", "the wedding", "a stranger's face"]
ADJS = ["quiet", "bright", "cold", "narrow", "crowded", "empty", "warm", "grey", "golden", "wet", "silent",
        "restless", "ancient", "crooked", "pale", "sudden"]
VERBS = ["watched", "remembered", "ignored", "counted", "followed", "mended", "painted", "carried", "studied",
         "measured", "described", "forgot", "questioned", "repaired", "praised", "hid"]
NOUNS = ["lamps", "boats", "windows", "letters", "coins", "birds", "clouds", "carts", "books", "candles",
         "stones", "ribbons", "maps", "bells", "apples", "shadows"]

TEMPLATES = [
    "{Name} walked to the {place} in the {time}, thinking about {thing}.",
    "The {adj} {place} was full of {nouns}, and nobody spoke of {thing}.",
    "\"I shall not go back,\" said {name}, \"not while {thing} is still unsettled.\"",
    "In the {time} the {nouns} along the {place} looked {adj} and strange.",
    "{Name} {verb} the {nouns} for an hour; it was {adj} work, but it kept the mind from {thing}.",
    "Nobody at the {place} had seen {name} since the {time}.",
    "There were {num} {nouns} on the table, and {name} {verb} every one of them.",
    "It was {adj}, she thought, how {thing} could change a whole town in {num} days.",
    "By the {time} the {place} had grown {adj}, and the {nouns} were put away.",
    "{Name} wrote that the {nouns} of the {place} were {adj} beyond anything in {year}.",
    "Why, asked {name}, should anyone care about {thing} now?",
    "The report of {year} {verb} the {place} in a single {adj} sentence.",
    "We {verb} the {nouns} together, {name} and I, until the {time} came.",
    "Still, the {adj} {nouns} reminded everyone of {thing}.",
    "{Name} laughed, folded the map, and turned toward the {place}.",
    "Prices rose by {num} per cent in {year}; the {place} never recovered.",
]


def _sentence(rng: random.Random) -> str:
    template = rng.choice(TEMPLATES)
    name = rng.choice(NAMES)
    return template.format(
        name=name, Name=name[0].upper() + name[1:], place=rng.choice(PLACES), time=rng.choice(TIMES),
        thing=rng.choice(THINGS), adj=rng.choice(ADJS), verb=rng.choice(VERBS), nouns=rng.choice(NOUNS),
        num=rng.randint(2, 99), year=rng.randint(1780, 1990),
    )


def paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(3, 7)))


def document_words(n_words: int, seed: int = 0) -> str:
    """About `n_words` words of prose in paragraphs separated by blank lines."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    count = 0
    while count < n_words:
        p = paragraph(rng)
        paragraphs.append(p)
        count += len(p.split())
    excess = count - n_words
    if excess > 0:
        last = paragraphs[-1].split(" ")
        paragraphs[-1] = " ".join(last[: max(1, len(last) - excess)])
    return "\n\n".join(paragraphs) + "\n"


def document_tokens(count_tokens, n_tokens: int, seed: int = 0) -> str:
    """Prose of about `n_tokens` tokens as counted by `count_tokens(text)` (within a few tokens)."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    # Grow paragraph by paragraph on an estimate, then fit the last paragraph word by word.
    total = 0
    while total < n_tokens:
        paragraphs.append(paragraph(rng))
        total = count_tokens("\n\n".join(paragraphs) + "\n")
    last = paragraphs.pop().split(" ")
    head = "\n\n".join(paragraphs)
    lo, hi = 1, len(last)
    while lo < hi:  # the most words of the last paragraph that keep the count <= n_tokens
        mid = (lo + hi + 1) // 2
        candidate = (head + "\n\n" if head else "") + " ".join(last[:mid]) + "\n"
        if count_tokens(candidate) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return (head + "\n\n" if head else "") + " ".join(last[:lo]) + "\n"


SELECTIONS_SEED = 7


def steering_passages(n: int, seed: int = SELECTIONS_SEED) -> list[tuple[str, int, int]]:
    """`n` (text, start, end) triples: two paragraphs of context, the selection is one whole sentence of
    the third paragraph."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        before = paragraph(rng) + "\n\n" + paragraph(rng) + "\n\n" + _sentence(rng) + " "
        sentence = _sentence(rng)
        after = " " + _sentence(rng) + "\n"
        text = before + sentence + after
        out.append((text, len(before), len(before) + len(sentence)))
    return out
