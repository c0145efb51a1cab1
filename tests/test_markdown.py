from __future__ import annotations

import random
import time

import pytest

from morph.editor import markdown as md
from morph.editor.markdown import STYLE_KEYS, FenceState, MdSpan, line_spans, markdown_line_spans, markdown_spans


def styled(text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.style_key) for s in markdown_spans(text)]


def test_heading() -> None:
    assert styled("## A *fine* title ##") == [
        ("##", "markup"),
        ("A *fine* title", "heading"),
        ("*", "markup"),
        ("fine", "italic"),
        ("*", "markup"),
        ("##", "markup"),
    ]
    assert styled("#hashtag is not a heading") == []
    assert styled("####### seven is not") == []


def test_emphasis() -> None:
    assert styled("a **bold** and __strong__ word") == [
        ("**", "markup"), ("bold", "bold"), ("**", "markup"),
        ("__", "markup"), ("strong", "bold"), ("__", "markup"),
    ]
    assert styled("an *em* and _em_") == [
        ("*", "markup"), ("em", "italic"), ("*", "markup"),
        ("_", "markup"), ("em", "italic"), ("_", "markup"),
    ]
    assert styled("~~gone~~") == [("~~", "markup"), ("gone", "strike"), ("~~", "markup")]
    keys = {k for _, k in styled("***both***")}
    assert keys == {"bold", "italic", "markup"}


def test_not_emphasis() -> None:
    assert styled("snake_case_name and 2 * 3 * 4 and a * b") == []
    assert styled(r"\*literal\*") == [("\\", "markup"), ("\\", "markup")]


def test_inline_code_wins() -> None:
    assert styled("use `a *b* c` and ``x ` y``") == [
        ("`", "markup"), ("a *b* c", "code"), ("`", "markup"),
        ("``", "markup"), ("x ` y", "code"), ("``", "markup"),
    ]
    assert styled("an `unclosed *em*") == [("*", "markup"), ("em", "italic"), ("*", "markup")]


def test_links() -> None:
    assert styled("see [the site](https://a.org/x_(y) \"T\") now") == [
        ("[", "markup"), ("the site", "link"), ("](", "markup"),
        ('https://a.org/x_(y) "T"', "url"), (")", "markup"),
    ]
    assert styled("![alt](p.png)")[0] == ("![", "markup")
    assert styled("<https://a.b/c>") == [("<", "markup"), ("https://a.b/c", "link"), (">", "markup")]
    assert styled("go to https://example.com/a_b_c.") == [("https://example.com/a_b_c", "link")]


def test_lists_and_quotes() -> None:
    assert styled("- item") == [("-", "list_marker")]
    assert styled("  12. item") == [("12.", "list_marker")]
    assert styled("* [x] done") == [("*", "list_marker"), ("[x]", "list_marker")]
    assert styled("*not a list*") == [("*", "markup"), ("not a list", "italic"), ("*", "markup")]
    assert styled("> > - deep **b**") == [
        ("> > - deep **b**", "quote"),
        (">", "markup"),
        (">", "markup"),
        ("-", "list_marker"),
        ("**", "markup"), ("b", "bold"), ("**", "markup"),
    ]
    assert styled("> # quoted heading")[:3] == [("> # quoted heading", "quote"), (">", "markup"), ("#", "markup")]


def test_rules() -> None:
    for line in ("---", "* * *", "___", "  - - -"):
        assert styled(line) == [(line, "rule")]


def test_fenced_code() -> None:
    text = "before *a*\n```python\nx = **not bold**\n\n````\nafter *b*\n~~~\n~~~~ still code\n~~~~\n"
    spans = styled(text)
    assert ("```python", "markup") in spans
    assert ("x = **not bold**", "code_block") in spans
    assert ("````", "markup") in spans  # a run at least as long closes the fence
    assert [k for s, k in spans if s == "b"] == ["italic"]
    assert ("~~~~ still code", "code_block") in spans  # a fence line with text does not close
    assert spans[-1] == ("~~~~", "markup")


def test_fence_closing_rules() -> None:
    lines = ["````", "```", "code", "`````", "text *x*"]
    per_line = markdown_line_spans(lines)
    assert per_line[0] == [(0, 4, "markup")]
    assert per_line[1] == [(0, 3, "code_block")]  # shorter run does not close
    assert per_line[2] == [(0, 4, "code_block")]
    assert per_line[3] == [(0, 5, "markup")]
    assert (6, 7, "italic") in per_line[4]


def test_line_api_and_state() -> None:
    spans, state = line_spans("```")
    assert state == FenceState("`", 3)
    spans, state = line_spans("**x**", state)
    assert spans == [(0, 5, "code_block")] and state is not None
    spans, state = line_spans("```", state)
    assert state is None


def test_offsets_are_whole_text() -> None:
    text = "one\n\ntwo **b**\n"
    spans = markdown_spans(text)
    assert MdSpan(9, 11, "markup") in spans and text[11:12] == "b"


def test_all_keys_known_and_ordered() -> None:
    text = "# H\n**b** *i* ~~s~~ `c` [l](u) <http://a> - x\n> q\n---\n```\nc\n```\n- [ ] t\n"
    spans = markdown_spans(text)
    assert {s.style_key for s in spans} == set(STYLE_KEYS)
    assert spans == sorted(spans, key=lambda s: (s.start, -s.end))
    for s in spans:
        assert 0 <= s.start < s.end <= len(text)


@pytest.mark.parametrize("seed", range(5))
def test_random_text_never_fails(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab *_`~[]()<>#->!\\\n 1.:/h"
    text = "".join(rng.choice(alphabet) for _ in range(3000))
    for s in markdown_spans(text):
        assert 0 <= s.start < s.end <= len(text)
        assert s.style_key in STYLE_KEYS


def _document(words: int) -> str:
    rng = random.Random(7)
    vocab = "the quick brown fox jumps over a lazy dog and she writes *prose* with **care**, `code` [x](y)".split()
    paras, n = [], 0
    while n < words:
        k = rng.randint(20, 80)
        head = "## Part\n" if rng.random() < 0.1 else ""
        bullet = "- " if rng.random() < 0.2 else ""
        paras.append(head + bullet + " ".join(rng.choice(vocab) for _ in range(k)))
        n += k
    return "\n\n".join(paras)


def test_fast_enough() -> None:
    text = _document(5000)
    md._line_spans_cached.cache_clear()
    t0 = time.perf_counter()
    markdown_spans(text)
    cold = time.perf_counter() - t0
    # typing one character: one line misses the cache
    edited = text.replace("fox", "foxes", 1)
    t0 = time.perf_counter()
    markdown_spans(edited)
    warm = time.perf_counter() - t0
    # generous bounds: the test machine is shared; typically ~10 ms cold, ~1 ms warm
    assert cold < 0.25, cold
    assert warm < 0.05, warm
