"""Issue 14: the rewrite methods (hybrid, prompt, steer, continuation), the automatic strength sweep, the
verification scores (combined score, parts, marks), and concepts in words (label match + output score).
Mechanics on the tiny random model (given a minimal chat template where a method needs one); what a
writer gets on the shipped default is checked once, cheaply, in the slow test at the end."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from morph.errors import InputError, NoFeatureMatches
from morph.features.concepts import (
    ConceptMatch,
    concept_words,
    concepts_for_words,
    derived_forms,
    direction_of,
    output_scores,
    unlabelled_note,
    token_ids,
    word_measure_tokens,
    word_stem,
)
from morph.features.labels import load_labels
from morph.features.steering import (
    AUTO_RANGE,
    DEFAULT_CANDIDATES,
    FLUENCY_LOSS_MAX,
    MARK_CONCEPT,
    MARK_FLUENCY,
    MARK_LENGTH,
    MARK_MEANING,
    MARK_META,
    MARK_REPEATS,
    MARK_UNCHANGED,
    MARK_UNFINISHED,
    MAX_ANNOUNCEMENT,
    SIMILARITY_MIN,
    WORDS_EPS,
    WORDS_PROBE,
    Candidate,
    Steerer,
    SteerDone,
    SteerProgress,
    SteerRequest,
    auto_ladder,
    chat_messages,
    clean_reply,
    combined_score,
    drop_announcement,
    instruction_for,
    meaning_similarity,
    meta_tokens,
    moved_summary,
    rank_candidates,
    repeats_itself,
    second_ladder,
    talks_about_the_text,
    word_similarity,
)

TEXT = ("The river ran past the old mill, and the miller's daughter watched the water turn the wheel.\n"
        "In the evening the lamps were lit along the harbour. Sailors sang and the gulls were quiet.\n")
SPAN = "In the evening the lamps were lit along the harbour."
START = TEXT.index(SPAN)
END = START + len(SPAN)
TEMPLATE = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}assistant:{% endif %}")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def chat_lens(tiny_lens):
    tokenizer = copy.deepcopy(tiny_lens.tokenizer)
    tokenizer.chat_template = TEMPLATE
    return dataclasses.replace(tiny_lens, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def chat_steerer(chat_lens):
    return Steerer(chat_lens)


# ----- scoring ---------------------------------------------------------------------------------------------------

def test_combined_score_is_the_harmonic_mean_of_its_parts_and_marks_what_fails():
    score, parts, marks = combined_score(gain=0.05, fluency_change=0.0, similarity=0.8, length_ratio=1.0)
    values = dict(parts)
    assert values == {"concept": pytest.approx(0.5), "fluency": 1.0, "meaning": 0.8, "length": 1.0}
    assert score == pytest.approx(4 / (1 / 0.5 + 1 + 1 / 0.8 + 1))
    assert marks == ()
    # a candidate that does not move the concept scores 0 and is marked, whatever else it does well
    score, parts, marks = combined_score(0.0, 0.3, 1.0, 1.0)
    assert score == 0 and marks == (MARK_CONCEPT,)
    # fluency: 1/e at the stated loss threshold, marked beyond it; improvements are not rewarded past 1
    assert dict(combined_score(0.1, -FLUENCY_LOSS_MAX, 1.0, 1.0)[1])["fluency"] == pytest.approx(math.exp(-1))
    assert MARK_FLUENCY in combined_score(0.1, -FLUENCY_LOSS_MAX - 0.01, 1.0, 1.0)[2]
    assert MARK_MEANING in combined_score(0.1, 0.0, SIMILARITY_MIN - 0.01, 1.0)[2]
    assert MARK_LENGTH in combined_score(0.1, 0.0, 1.0, 2.5)[2]
    assert dict(combined_score(0.1, 0.0, 1.0, 0.5)[1])["length"] == pytest.approx(0.5)


def test_fluent_candidates_that_move_the_concept_rank_first_and_the_less_fluent_last():
    def cand(i, score, marks):
        return Candidate(i, "x", 0.0, -3.0, 0.5, 0.1, score, MARK_CONCEPT not in marks, 3, marks=marks)

    ranked = rank_candidates([cand(0, 0.9, (MARK_FLUENCY,)), cand(1, 0.2, ()), cand(2, 0.0, (MARK_CONCEPT,)),
                              cand(3, 0.4, ())])
    assert [c.index for c in ranked] == [3, 1, 2, 0]  # the less fluent one last, whatever its score
    assert [c.rank for c in ranked] == [1, 2, 3, 4]
    # a fluent rewrite that moves the concept goes above one that did not, even with more marks; one that
    # moved it but is no longer English goes below every fluent one
    ranked = rank_candidates([cand(0, 0.0, (MARK_CONCEPT,)), cand(1, 0.1, (MARK_FLUENCY,)),
                              cand(2, 0.0, (MARK_CONCEPT, MARK_LENGTH)), cand(3, 0.2, (MARK_MEANING, MARK_LENGTH))])
    assert [c.index for c in ranked] == [3, 0, 2, 1]
    # the original given back unchanged goes last, even below a candidate with more marks
    ranked = rank_candidates([cand(0, 0.0, (MARK_UNCHANGED, MARK_CONCEPT)),
                              cand(1, 0.0, (MARK_CONCEPT, MARK_FLUENCY, MARK_MEANING))])
    assert [c.index for c in ranked] == [1, 0]
    # so does a comment on the text, however well it scores
    ranked = rank_candidates([cand(0, 0.9, (MARK_META,)), cand(1, 0.1, (MARK_FLUENCY, MARK_MEANING))])
    assert [c.index for c in ranked] == [1, 0]
    # between two with as many marks, the one the words' second reading agrees with first, whatever the score;
    # it never lifts a candidate over one with fewer marks
    read = [dataclasses.replace(cand(0, 0.6, ()), words_gain=WORDS_EPS / 2),
            dataclasses.replace(cand(1, 0.3, ()), words_gain=WORDS_EPS * 2),
            dataclasses.replace(cand(2, 0.9, (MARK_MEANING,)), words_gain=WORDS_EPS * 3)]
    assert [c.index for c in rank_candidates(read)] == [1, 0, 2]


def test_the_count_of_candidates_that_move_the_concept_says_how_many_read_fluently():
    def cand(marks):
        return Candidate(0, "x", 0.0, -3.0, 0.5, 0.1, 0.3, MARK_CONCEPT not in marks, 3, marks=marks)

    fluent, halting, still = cand(()), cand((MARK_FLUENCY,)), cand((MARK_CONCEPT,))
    assert moved_summary([fluent, fluent, still]) == "2 move the concept"
    assert moved_summary([halting, still]) == "1 moves the concept, not fluently"
    assert moved_summary([halting, halting]) == "2 move the concept, none fluently"
    assert moved_summary([fluent, halting, halting]) == "3 move the concept (1 fluently)"
    assert moved_summary([still]) == "0 move the concept"


@pytest.mark.parametrize("reply, talks", [
    ("The previous sentence, \"He said the boiler would be fixed,\" is a more formal one.", True),
    ("I'd suggest rephenging this: It was a message from the bank.", True),
    ("Instead of \"By six,\" we can use \"The office was still.\"", True),
    ("The original one: The original one:", True),
    ("By adding \"is\" to the original text:", True),
    ("(I added) Yes, I did. I was reminded of all the Old Tom's pride.", True),
    ("Here's a rephrased version of the original.", True),
    ("The bank wrote about a strange payment.", False),
    ("The original plan was to sail at dawn.", False),  # "original" alone is a word of stories too
    ("She read the sentence aloud in court.", False),  # the original speaks of a sentence: not a comment
])
def test_a_comment_on_the_text_is_told_from_a_rewrite(reply, talks):
    original = "She read the sentence in court." if "court" in reply else "It was a message from the bank."
    assert talks_about_the_text(reply, original) is talks


def test_a_candidate_that_gives_the_original_back_is_marked_unchanged(chat_steerer):
    import copy

    from morph.features.steering import OriginalScore, _Row, _target

    plan = chat_steerer._plan(TEXT, START, END, SteerRequest.single(3, "auto", n=2, method="hybrid",
                                                                    concept="calmer"))
    reading = chat_steerer._reading(plan)
    original = OriginalScore(plan.core, _target(plan, reading.features), reading.fluency, reading.n_tokens)

    def candidate(body):
        row = _Row(0, torch.Generator())
        return chat_steerer._candidate(plan, row, body, original, copy.deepcopy(reading.cache))

    same = candidate(plan.core.upper())  # case and spacing aside, the same words
    assert same.marks[0] == MARK_UNCHANGED and same.score == 0.0 and not same.raises_concept
    other = candidate("The river rose before dawn and nobody saw it.")
    assert MARK_UNCHANGED not in other.marks and MARK_META not in other.marks
    assert MARK_META in candidate("I'd suggest keeping the sentence as it is.").marks


def test_a_chat_reply_may_not_sample_words_about_writing_nor_open_as_a_comment():
    """meta_tokens: the one-token forms of the words about writing the original does not use, and the openers
    of comments unless the original opens with one (a fake tokenizer: one token per word, two for 'wording')."""
    class Tokenizer:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1, 2] if "wording" in text.lower() else [hash(text) % 10_000]}

    class Lens:
        tokenizer = Tokenizer()

    ids = Lens.tokenizer
    anywhere, first = meta_tokens(Lens(), "I read the sentence aloud.")
    assert ids(" rewrite")["input_ids"][0] in anywhere and ids(" Grammar")["input_ids"][0] in anywhere
    assert ids(" sentence")["input_ids"][0] not in anywhere  # the original's own word
    assert 1 not in anywhere and 2 not in anywhere  # a word of two tokens is left to the mark
    assert ids("Here")["input_ids"][0] in first and ids("I")["input_ids"][0] not in first


def test_the_banned_tokens_are_never_sampled(chat_steerer, monkeypatch):
    """The ban reaches the sampling: the greedy reply's first token, once banned at the start, never opens a
    candidate again."""
    import morph.features.steering as steering

    request = SteerRequest.single(3, 0.0, n=2, method="prompt", concept="calmer", temperature=0, max_tokens=6)
    first = chat_steerer.run(TEXT, START, END, request).candidates[0].text.split()[0]
    token = chat_steerer.lens.tokenizer(first, add_special_tokens=False)["input_ids"][0]
    monkeypatch.setattr(steering, "meta_tokens", lambda lens, original: ((), (token,)))
    plan = chat_steerer._plan(TEXT, START, END, request)
    assert plan.banned_first == (token,)
    for candidate in chat_steerer.run(TEXT, START, END, request).candidates:
        assert chat_steerer.lens.tokenizer(candidate.text.strip(), add_special_tokens=False)["input_ids"][0] != token


def test_a_candidate_that_copied_the_original_up_to_its_stop_goes_on(chat_steerer, monkeypatch):
    """A reply that has given the original back up to its final stop may not stop there (nor end its turn): it
    goes on. Here the greedy reply's first two words stand for the original, and the token it went on with
    for a stop: run again, it takes another."""
    import morph.features.steering as steering

    assert steering._copy_stem("The crowd went quiet.") == "The crowd went quiet"
    assert steering._copy_stem('He said "no."') == 'He said "no' and steering._copy_stem("and then") == ""
    request = SteerRequest.single(3, 0.0, n=1, method="prompt", concept="calmer", temperature=0, max_tokens=8,
                                  second_round=False)
    plain = chat_steerer.run(TEXT, START, END, request).candidates[0].text.strip()
    stem, following = plain[:2], plain[2]  # (the tiny model's reply is no English: any characters do)
    monkeypatch.setattr(steering, "_copy_stem", lambda core: stem)
    masks = Steerer._token_masks
    tokenizer = chat_steerer.lens.tokenizer

    def with_a_stop(self, vocab):
        kinds = masks(self, vocab)
        texts = tokenizer.batch_decode([[i] for i in range(vocab)])
        return kinds._replace(ends=kinds.ends | torch.tensor([t.strip()[:1] == following for t in texts]))

    monkeypatch.setattr(Steerer, "_token_masks", with_a_stop)
    again = chat_steerer.run(TEXT, START, END, request).candidates[0].text.strip()
    assert again.startswith(stem) and again[2:3] != following


def test_a_candidate_caught_in_a_loop_is_marked(chat_steerer):
    original = "The flat was small, but the kitchen window caught the morning light."
    assert repeats_itself(original + " So the flat was small, but the kitchen window", original)
    assert not repeats_itself("The flat was small, and the kitchen window caught the light.", original)
    assert not repeats_itself("A b c d. A b c d.", "A b c d. A b c d.")  # the original says it twice too
    import copy as copying

    from morph.features.steering import OriginalScore, _Row, _target

    plan = chat_steerer._plan(TEXT, START, END, SteerRequest.single(3, "auto", n=2, method="hybrid",
                                                                    concept="calmer"))
    reading = chat_steerer._reading(plan)
    score = OriginalScore(plan.core, _target(plan, reading.features), reading.fluency, reading.n_tokens)
    looped = chat_steerer._candidate(plan, _Row(0, torch.Generator()), plan.core + " The lamps were lit along the"
                                     " harbour.", score, copying.deepcopy(reading.cache))
    assert MARK_REPEATS in looped.marks


def test_meaning_similarity_forgives_reordering_and_additions_but_not_a_new_subject():
    """The share of the original's content words (stemmed) a candidate keeps."""
    original = "The train was late again, and the platform smelled of rain and diesel."
    assert meaning_similarity(original, original) == 1.0
    reordered = "Again the train was late; the platform smelled of diesel and rain."
    other = "The sea is wide and the gulls are calling."
    assert meaning_similarity(reordered, original) > SIMILARITY_MIN > meaning_similarity(other, original)
    added = "The train was late again, and the platform smelled of rain and diesel, like a harbour at dawn."
    assert meaning_similarity(added, original) == 1.0
    # of train, late, platform, smell(ed), rain, diesel ("again" is a stop word)
    assert meaning_similarity("The train was late and the sea was calm.", original) == pytest.approx(2 / 6)
    assert meaning_similarity("The trains were late again; rain fell.", original) == pytest.approx(3 / 6)
    # an original without a content word: word order
    assert meaning_similarity("It was.", "It was so.") == word_similarity("It was.", "It was so.") > 0


def test_replies_lose_preambles_and_wrapping_quotes():
    assert clean_reply('Here is the rewritten sentence: "The sea was calm."', "The lake was calm.") == \
        "The sea was calm."
    assert clean_reply("Rewritten passage: It rained.", "It poured.") == "It rained."
    assert clean_reply("Rewite the sentence: It rained.", "It poured.") == "It rained."
    assert clean_reply("The sentence: it is fine", "x") == "it is fine"
    assert clean_reply("Note: the train was late.", "The train was late.") == "Note: the train was late."
    assert clean_reply('"Go," she said.', '"Stay," she said.') == '"Go," she said.'
    assert clean_reply("The sentence can be rephrased as:\n\nMartha smiled.", "Martha laughed.") == "Martha smiled."
    # a lead-in in other words, up to a colon the original has not: the rewrite is what follows
    assert clean_reply("The reader will find this reworded version: It was a note from the bank.",
                       "It was a message from the bank.") == "It was a note from the bank."
    assert clean_reply("She had one wish: to see him again.", "She wanted to see him.") == \
        "She had one wish: to see him again."


def test_a_first_line_that_announces_the_rewrite_is_not_the_rewrite():
    """The instruct default often opens with "The sentence can be rephrased as:" and a line break; a one-line
    selection's candidate ends at a line break, so without this the announcement was the candidate."""
    assert drop_announcement("The sentence can be rephrased as:") == "The sentence can be rephrased as:"  # not yet
    assert drop_announcement("The sentence can be rephrased as:\n") == ""  # the rewrite is still to come
    assert drop_announcement("Rephrased:\n Martha smiled.\nMore") == "Martha smiled.\nMore"
    assert drop_announcement("It was late.\nNext:") == "It was late.\nNext:"
    long_line = "A" * (MAX_ANNOUNCEMENT + 1) + ":\nrest"
    assert drop_announcement(long_line) == long_line


def test_replies_lose_the_instruction_echoed():
    """Seen in the editor: the model repeats the request, typo and all, before the rewrite."""
    assert clean_reply("Rewite this sentence so that it is calmer: The storm came in off the sea.",
                       "The storm came in off the sea before dawn.") == "The storm came in off the sea."
    assert clean_reply("Rewrite this passage so that it is about the sea:\nGulls cried.", "x") == "Gulls cried."
    # narrative that merely begins like it is left alone
    assert clean_reply("The sentence he received was harsh: ten years.", "x") == \
        "The sentence he received was harsh: ten years."


# ----- concepts in words -----------------------------------------------------------------------------------------

def test_concept_words_and_direction():
    assert concept_words("about the sea") == ["sea"]
    assert concept_words("much calmer") == ["calmer"]
    assert concept_words("sad and sad") == ["sad"]
    assert concept_words("more formal") == ["formal"]
    assert direction_of("less jargon") == "away" and direction_of("calmer") == "toward"
    assert instruction_for("calmer") == "Rewrite this sentence so that it is calmer:"
    assert instruction_for("formal", "away") == "Rewrite this sentence so that it is less formal:"
    assert instruction_for("less jargon", "away") == "Rewrite this sentence so that it is less jargon:"
    assert instruction_for("") == "Rewrite this sentence:"


def test_words_no_label_holds_get_a_note():
    junk = ConceptMatch(686, "thank · data · site", 0.0, 1.1, 1.0, "fires more on your words", "example")
    sea = ConceptMatch(42, "sea · ocean", 0.9, 2.0, 3.0, "labels hold 'sea'")
    assert "no feature's label holds 'sadder'" in unlabelled_note("sadder", [junk])
    assert unlabelled_note("about the sea", [junk, sea]) is None
    assert unlabelled_note("", [junk]) is None and unlabelled_note("sadder", []) is None
    # a feature whose labels hold only a word near the writer's ("peaceful" for calmer) does not count
    peace = ConceptMatch(2393, "while · peace · when", 0.48, 0.5, 0.8, "labels hold 'peaceful' (near your words)",
                         "related", near_only=True)
    assert "no feature's label holds 'calmer'" in unlabelled_note("calmer", [peace, junk])


def test_word_stems_and_derived_forms():
    assert [word_stem(w) for w in ("calmer", "angrily", "angrier", "sadder", "animals", "smaller", "glass", "sea")] \
        == ["calm", "angry", "angry", "sad", "animal", "small", None, None]
    assert derived_forms("calm") == ["calmer", "calmly", "calmness", "calms"]
    assert derived_forms("angry")[:2] == ["angrier", "angrily"]
    assert derived_forms("sad")[:2] == ["sadder", "sadly"]
    assert derived_forms("gentle")[:2] == ["gentler", "gently"]


def test_output_score_is_high_toward_the_tokens_a_feature_promotes(tiny_lens):
    from morph.models.unembed import promoted_token_ids

    features = [3, 11, 40]
    promoted = promoted_token_ids(tiny_lens.model, tiny_lens.sae.W_dec[features], 5).tolist()
    labels = load_labels(tiny_lens)
    for row, feature in enumerate(features):
        own = output_scores(tiny_lens, labels, [feature], promoted[row], TEXT, START, END)[0]
        other = output_scores(tiny_lens, labels, [feature], promoted[(row + 1) % 3], TEXT, START, END)[0]
        assert own > 0 and own > other


def test_output_score_against_controls_is_the_gain_on_the_words_less_the_gain_on_the_controls(tiny_lens):
    labels = load_labels(tiny_lens)
    features, words, controls = [3, 11, 40], [5, 6, 7], [20, 21, 22]
    on_words = output_scores(tiny_lens, labels, features, words, TEXT, START, END)
    on_controls = output_scores(tiny_lens, labels, features, controls, TEXT, START, END)
    both = output_scores(tiny_lens, labels, features, words, TEXT, START, END, controls=controls)
    assert both == pytest.approx([w - c for w, c in zip(on_words, on_controls)], abs=1e-5)


def test_concepts_for_words_show_both_scores_and_why(tiny_lens):
    labels = load_labels(tiny_lens)
    word = next(w for w in (labels.label(i).split(" · ")[0].strip() for i in range(tiny_lens.d_sae))
                if w.isalpha() and len(w) >= 3)
    matches = concepts_for_words(tiny_lens, labels, word, TEXT, START, END, k=5)
    assert 1 <= len(matches) <= 5
    for m in matches:
        assert m.label and m.why and "output" in m.why
        assert 0 <= m.label_score <= 1 and isinstance(m.output_score, float)
    positive = [m for m in matches if m.output_score > 0]
    assert matches[: len(positive)] == positive  # features that move the model toward the words first
    with pytest.raises(InputError, match="content word"):
        concepts_for_words(tiny_lens, labels, "the more", TEXT, START, END)
    with pytest.raises(InputError, match="empty"):
        concepts_for_words(tiny_lens, labels, "  ", TEXT, START, END)


def test_more_like_this_from_an_example(tiny_lens):
    matches = Steerer(tiny_lens).concepts_for("", TEXT, START, END,
                                              example="Gulls and ships and the grey sea beyond the harbour wall.")
    assert matches and all(m.source == "example" for m in matches)
    assert all("example" in m.why for m in matches)


def test_a_feature_number_is_a_concept(tiny_lens):
    [match] = Steerer(tiny_lens).concepts_for("7", TEXT, START, END)
    assert match.id == 7 and match.why == "named by its number"


# ----- methods and the strength sweep ----------------------------------------------------------------------------

def test_methods_build_their_prompts(chat_steerer, chat_lens):
    tok = chat_lens.tokenizer
    plans = {m: chat_steerer._plan(TEXT, START, END, SteerRequest.single(3, "auto", method=m, concept="calmer"))
             for m in ("hybrid", "prompt", "steer", "continuation")}
    assert "calmer" in tok.decode(plans["hybrid"].gen_prefix) and SPAN in tok.decode(plans["hybrid"].gen_prefix)
    assert "calmer" in tok.decode(plans["prompt"].gen_prefix)
    assert "calmer" not in tok.decode(plans["steer"].gen_prefix) and "Rewrite" in tok.decode(plans["steer"].gen_prefix)
    assert plans["continuation"].gen_prefix == plans["continuation"].score_prefix
    assert chat_steerer._edit_fn(plans["prompt"]) is None  # prompt-only: no vector
    assert chat_steerer._edit_fn(plans["hybrid"]) is not None and chat_steerer._edit_fn(plans["steer"]) is not None
    assert plans["hybrid"].ladder == auto_ladder(DEFAULT_CANDIDATES) and plans["prompt"].ladder == ()
    # auto: hybrid with a chat template
    assert chat_steerer._plan(TEXT, START, END, SteerRequest.single(3)).method == "hybrid"


def test_methods_that_need_an_instruct_model_say_so(tiny_lens):
    steerer = Steerer(tiny_lens)
    assert steerer._plan(TEXT, START, END, SteerRequest.single(3)).method == "continuation"
    for method in ("hybrid", "prompt", "steer"):
        with pytest.raises(InputError, match="chat template"):
            steerer.stream(TEXT, START, END, SteerRequest.single(3, method=method))
    with pytest.raises(InputError, match="unknown method"):
        steerer.stream(TEXT, START, END, SteerRequest.single(3, method="magic"))


def test_auto_strength_sweeps_the_ladder_over_the_candidates(chat_steerer):
    # one rung unsteered (the instruction alone), the others spread over the usable band
    assert auto_ladder(4)[:2] == (0.0, AUTO_RANGE[0]) and auto_ladder(4)[-1] == AUTO_RANGE[1]
    assert len(set(auto_ladder(6))) == 6 and auto_ladder(1) == ((AUTO_RANGE[0] + AUTO_RANGE[1]) / 2,)
    assert auto_ladder(2) == AUTO_RANGE
    result = chat_steerer.run(TEXT, START, END, SteerRequest.single(3, "auto", n=4, seed=0, method="hybrid",
                                                                    concept="calmer"))
    assert result.method == "hybrid" and result.ladder == auto_ladder(4) * result.rounds
    assert "calmer" in result.instruction
    assert sorted(c.strength for c in result.candidates) == sorted(result.ladder)
    for c in result.candidates:
        assert [name for name, _ in c.parts] == ["concept", "fluency", "meaning", "length"]
        assert c.fluency_change == pytest.approx(c.fluency - result.original.fluency)
        assert (MARK_CONCEPT in c.marks) == (not c.raises_concept)


def test_a_second_round_when_no_candidate_passes(chat_steerer, monkeypatch):
    """None of the first n moves the concept unmarked: n more with new seeds, streamed as round 2 and ranked
    with the first. For a sentence rewritten through the chat template they keep it and add to it (the reply
    starts with the original less its stop), steered over the first round's ladder; for a fragment, half
    unsteered and half over half the band. `second_round=False`, or a first round with a passing candidate,
    stops after n."""
    assert second_ladder(4) == (0.0, 0.0, AUTO_RANGE[0] / 2, AUTO_RANGE[1] / 2)
    assert second_ladder(1) == ((AUTO_RANGE[0] + AUTO_RANGE[1]) / 4,) and second_ladder(3)[0] == 0.0
    monkeypatch.setattr(Candidate, "passes", property(lambda self: False))
    request = SteerRequest.single(3, "auto", n=3, seed=0, method="hybrid", concept="calmer")
    events = list(chat_steerer.stream(TEXT, START, END, request))
    result = events[-1].result
    assert isinstance(events[-1], SteerDone) and result.rounds == 2
    assert result.ladder == auto_ladder(3) * 2
    assert sorted(c.index for c in result.candidates) == list(range(6))
    assert [c.rank for c in result.candidates] == list(range(1, 7))
    by_index = {c.index: c for c in result.candidates}
    assert [by_index[j].strength for j in range(3, 6)] == list(auto_ladder(3))
    assert not any(by_index[j].adds for j in range(3))
    stem = SPAN[:-1]
    added = [by_index[j] for j in range(3, 6)]
    assert all(c.adds and c.text.startswith(stem) for c in added)  # the sentence kept whole...
    longer = [c for c in added if len(c.text) > len(SPAN)]  # ... and a new word or clause after it, or, cut at
    assert longer and all(c.text[len(stem)] in " ,;:—–" and MARK_UNCHANGED not in c.marks for c in longer)
    assert all(MARK_UNCHANGED in c.marks for c in added if c not in longer)  # the cap with nothing to keep, itself
    progress = [e for e in events if isinstance(e, SteerProgress)]
    assert progress[0].round == 1 and progress[0].n == 3 and progress[-1].round == 2 and progress[-1].n == 6
    # the first round's candidates are those of a request without a second round
    one = chat_steerer.run(TEXT, START, END, dataclasses.replace(request, second_round=False))
    assert one.rounds == 1 and sorted(c.text for c in one.candidates) == sorted(
        c.text for c in result.candidates if c.index < 3)
    prompt = chat_steerer.run(TEXT, START, END, dataclasses.replace(request, method="prompt"))
    assert prompt.rounds == 2 and prompt.ladder == () and len(prompt.candidates) == 6
    assert all(c.strength is None for c in prompt.candidates) and sum(c.adds for c in prompt.candidates) == 3
    # a fragment (no sentence's end to add after): new seeds, half of them unsteered
    start = TEXT.index("the lamps were lit")
    fragment = chat_steerer.run(TEXT, start, start + len("the lamps were lit"), request)
    assert fragment.rounds == 2 and fragment.ladder == auto_ladder(3) + second_ladder(3)
    assert not any(c.adds for c in fragment.candidates)
    monkeypatch.setattr(Candidate, "passes", property(lambda self: self.index == 1))
    passed = chat_steerer.run(TEXT, START, END, request)
    assert passed.rounds == 1 and len(passed.candidates) == 3 and passed.ladder == auto_ladder(3)


def test_a_round_that_adds_keeps_the_sentence_and_ends_it(chat_steerer):
    """`Steerer._adding`: the reply starts with the original less its stop; a base model, a fragment or a
    sentence that closes a quote get no such round. Cut at the cap, what was added ends at its last stop, else
    at its last clause mark with the original's stop; so does a rewrite of a sentence, else it is marked
    unfinished."""
    import morph.features.steering as steering

    request = SteerRequest.single(3, "auto", n=2, method="hybrid", concept="calmer")
    plan = chat_steerer._plan(TEXT, START, END, request)
    adding = chat_steerer._adding(plan)
    stem = token_ids(chat_steerer.lens, SPAN[:-1])
    assert adding is not None and adding.stem == SPAN[:-1] and adding.gen_prefix == plan.gen_prefix + stem
    assert adding.min_tokens < plan.min_tokens and adding.cap == plan.length + 6
    assert chat_steerer._cut_at_cap(adding, ", and the night was still. And then") == ", and the night was still."
    assert chat_steerer._cut_at_cap(adding, ", the night still, the water calm and") == ", the night still."
    assert chat_steerer._cut_at_cap(adding, " while the water lapped at the") == "."
    # a rewrite of a sentence cut at the cap: its last stop, else its last clause with the stop, else unfinished
    assert chat_steerer._cut_at_cap(plan, "The lamps were lit along the harbour, and the gulls over the") == (
        "The lamps were lit along the harbour.")
    assert chat_steerer._cut_at_cap(plan, "At dusk, the lamps glowed along the quiet harbour and the") == (
        "At dusk, the lamps glowed along the quiet harbour and")
    capped = chat_steerer.run(TEXT, START, END, dataclasses.replace(request, n=4, max_tokens=3, second_round=False))
    assert any(MARK_UNFINISHED in c.marks for c in capped.candidates)
    for c in capped.candidates:
        assert (MARK_UNFINISHED in c.marks) == (steering._SENTENCE_END.search(c.text.strip()) is None)
    continuation = chat_steerer._plan(TEXT, START, END, dataclasses.replace(request, method="continuation"))
    assert chat_steerer._adding(continuation) is None
    quoted = 'He said, "The lamps are lit."'
    for text, start, end in ((TEXT, START, START + len("In the evening")), (quoted, 0, len(quoted))):
        assert chat_steerer._adding(chat_steerer._plan(text, start, end, request)) is None


def test_the_per_row_strength_scales_the_added_vector(chat_steerer, chat_lens):
    plan = chat_steerer._plan(TEXT, START, END, SteerRequest.single(3, "auto", n=2, method="steer",
                                                                    max_norm_ratio=100.0))
    edit = chat_steerer._edit_fn(plan)
    x = torch.randn(2, 3, chat_lens.d_model)
    chat_steerer._row_scales["mult"] = torch.tensor([1.0, 3.0])
    try:
        added = (edit(x) - x).norm(dim=-1)
    finally:
        chat_steerer._row_scales["mult"] = None
    assert torch.allclose(added[1], 3 * added[0], rtol=1e-4)


def test_prompt_only_candidates_carry_no_strength(chat_steerer):
    result = chat_steerer.run(TEXT, START, END, SteerRequest.single(3, "auto", n=2, seed=1, method="prompt",
                                                                    concept="calmer"))
    assert result.ladder == () and all(c.strength is None for c in result.candidates)


def test_for_matches_weights_features_by_their_ranking(tiny_lens):
    matches = [ConceptMatch(3, "a", 1.0, 2.0, 2.0, "why"), ConceptMatch(5, "b", 0.0, 1.0, 1.0, "why")]
    request = SteerRequest.for_matches(matches, "calmer", "auto", method="hybrid")
    assert request.auto_strength and request.concept == "calmer"
    assert request.features == ((3, 1.0), (5, 0.5))
    fixed = SteerRequest.for_matches(matches, "calmer", "strong")
    assert not fixed.auto_strength and fixed.features[0] == (3, 8.0)
    with pytest.raises(InputError):
        SteerRequest.for_matches([], "calmer")


def test_top_p_sampling_draws_only_from_the_nucleus_and_reads_a_flat_row_whole():
    """Top-p looks at the likeliest SAMPLE_HEAD tokens first; a row whose head holds less than top_p of the
    mass (a flat distribution) is sorted whole, so its draws reach past the head."""
    from morph.features.steering import SAMPLE_HEAD

    vocab = SAMPLE_HEAD * 8
    peaky = torch.full((vocab,), -30.0)
    peaky[[5, 900, 4000]] = torch.tensor([3.0, 2.0, -1.0])  # p ~ 0.72, 0.26, 0.01: the nucleus at 0.95 is {5, 900}
    flat = torch.zeros(vocab)
    logits = torch.stack([peaky, flat])
    rows = [type("Row", (), {"generator": torch.Generator().manual_seed(k)})() for k in range(2)]
    request = SteerRequest(features=((0, 1.0),), n=2, temperature=1.0, top_p=0.95)
    drawn = [Steerer._sample(None, logits, rows, request) for _ in range(300)]  # type: ignore[arg-type]
    assert {d[0] for d in drawn} == {5, 900}
    assert max(d[1] for d in drawn) >= SAMPLE_HEAD  # the flat row was not cut to the head
    again = [type("Row", (), {"generator": torch.Generator().manual_seed(k)})() for k in range(2)]
    assert Steerer._sample(None, logits, again, request) == drawn[0]  # a seed draws the same


def test_the_chat_request_follows_one_worked_rewrite():
    """A small instruct model shown one rewrite rewrites (told only the instruction, it often continues the
    text, comments on it or copies it): the conversation is the system line with the text before, one
    worked exchange in the request's own form, then the request."""
    messages = chat_messages("The meeting ran long again.", "By six the office was empty.",
                             instruction_for("angrier"))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "The meeting ran long again." in messages[0]["content"]
    assert messages[1]["content"].startswith(instruction_for("more vivid")) and messages[2]["content"]
    assert messages[3]["content"] == instruction_for("angrier") + "\nBy six the office was empty."
    plain = chat_messages("", "By six the office was empty.", instruction_for(""))
    assert plain[1]["content"].startswith(instruction_for("") + "\n") and "vivid" not in plain[1]["content"]


# ----- your words alone: no feature, the instruction rewrites, the words measure -------------------------------

def test_words_no_feature_matches_are_refused_as_such(tiny_lens):
    with pytest.raises(NoFeatureMatches, match="your words alone"):
        concepts_for_words(tiny_lens, load_labels(tiny_lens), "zebra", TEXT, START, END)


def test_your_words_alone_rewrite_by_the_instruction_and_the_words_measure_it(chat_steerer, chat_lens):
    """No feature: the words in the instruction, and each candidate's concept level is the log-probability
    mass the plain model puts on the words' one-token forms after WORDS_PROBE, less the mass on the control
    words; the gain is the candidate's level less the original's, in nats. (Prompt: the instruction alone;
    hybrid also steers by the words' direction, below.)"""
    targets, controls = word_measure_tokens(chat_lens, "more mill")
    assert targets and not set(targets) & set(controls)
    result = chat_steerer.run(TEXT, START, END, SteerRequest.by_words("more mill", n=3, seed=0, method="prompt"))
    assert result.by_words and result.method == "prompt" and result.features == () and result.labels == ()
    assert "more mill" in result.instruction and all(c.strength is None for c in result.candidates)

    def level(core: str) -> float:
        tok = chat_lens.tokenizer
        before = tok(TEXT[:START].rstrip(" "), add_special_tokens=False)["input_ids"]
        ids = before + tok(core + WORDS_PROBE, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(chat_lens.model(input_ids=torch.tensor([[chat_lens.bos_token_id] + ids]))
                                     .logits[0, -1].float(), dim=-1)
        return float(torch.logsumexp(logp[targets], -1) - (torch.logsumexp(logp[controls], -1) if controls else 0))

    assert result.original.target_activation == pytest.approx(level(SPAN), abs=1e-3)
    for c in result.candidates:
        assert c.target_activation == pytest.approx(level(c.text.strip()), abs=1e-3)
        assert c.gain == pytest.approx(c.target_activation - result.original.target_activation, abs=1e-6)
        assert c.raises_concept == (c.gain > WORDS_EPS) and (MARK_CONCEPT in c.marks) == (not c.raises_concept)
    away = chat_steerer.run(TEXT, START, END, SteerRequest.by_words("more mill", mode="away", n=1, seed=0))
    for c in away.candidates:
        assert c.gain == pytest.approx(away.original.target_activation - c.target_activation, abs=1e-6)
    # with features and words, the words gain is read beside the features' (the score does not use it)
    both = chat_steerer.run(TEXT, START, END, SteerRequest.single(3, "auto", n=2, seed=0, concept="more mill"))
    assert not both.by_words and both.original.words_level == pytest.approx(level(SPAN), abs=1e-3)
    for c in both.candidates:
        assert c.words_gain == pytest.approx(level(c.text.strip()) - level(SPAN), abs=1e-3)
        assert c.raises_concept == (c.gain > 0.01)  # the features' gain decides, in typical-max units
    plain = chat_steerer.run(TEXT, START, END, SteerRequest.single(3, "auto", n=1, seed=0))
    assert plain.original.words_level is None and plain.candidates[0].words_gain is None


def test_your_words_alone_with_hybrid_steer_by_their_own_direction(chat_steerer, chat_lens, monkeypatch):
    """Hybrid by your words alone adds the words' contrastive direction (concepts.words_direction: the words'
    forms in short carriers less the control words', scaled to what a typical feature adds at its typical
    max) at the hook while the instruction rewrites: swept over the candidates with auto strength (one
    unsteered), at the strength given otherwise, negated for "away"; the words still measure the concept."""
    from morph.features import steering as steering_module
    from morph.features.concepts import feature_unit_norm, words_direction

    vec = words_direction(chat_lens, chat_steerer.labels, "more mill")
    assert vec is not None and vec.shape == (chat_lens.d_model,) and bool(torch.isfinite(vec).all())
    assert float(vec.norm()) == pytest.approx(feature_unit_norm(chat_lens, chat_steerer.labels), rel=1e-4)
    assert words_direction(chat_lens, chat_steerer.labels, "the more") is None  # no content word
    assert not torch.allclose(vec, words_direction(chat_lens, chat_steerer.labels, "were past"))
    result = chat_steerer.run(TEXT, START, END, SteerRequest.by_words("more mill", n=3, seed=0, method="hybrid"))
    assert result.by_words and result.method == "hybrid" and result.features == ()
    assert result.ladder[:3] == auto_ladder(3) and sorted(c.strength for c in result.candidates) == sorted(result.ladder)
    added = []
    edit_fn = steering_module.Steerer._edit_fn

    def spy(self, plan):
        added.append(None if plan.vector is None else plan.vector.clone())
        return edit_fn(self, plan)

    monkeypatch.setattr(steering_module.Steerer, "_edit_fn", spy)
    for mode, sign in (("toward", 1.0), ("away", -1.0)):
        chat_steerer.run(TEXT, START, END, SteerRequest.by_words("more mill", mode=mode, strength=2.5, n=1,
                                                                 method="hybrid"))
        assert torch.allclose(added[-1], sign * 2.5 * vec)
    chat_steerer.run(TEXT, START, END, SteerRequest.by_words("more mill", strength=2.5, n=1, method="prompt"))
    assert added[-1] is None
    # strength 0 on hybrid: the instruction alone, nothing added, shown as the prompt method
    zero = chat_steerer.run(TEXT, START, END, SteerRequest.by_words("more mill", strength=0, n=1, method="hybrid"))
    assert added[-1] is None and zero.method == "prompt" and zero.candidates[0].strength is None


@pytest.mark.parametrize("request_,message", [
    (SteerRequest.by_words("more mill", method="steer"), "need the instruction"),
    (SteerRequest.by_words("more mill", method="continuation"), "need the instruction"),
    (SteerRequest.by_words("more mill", mode="suppress"), "suppress zeroes features"),
    (SteerRequest.by_words("qqqzzzxxyy"), "cannot measure it"),
    (SteerRequest.by_words("  "), "no feature given"),
])
def test_your_words_alone_say_what_they_cannot_do(chat_steerer, request_, message):
    with pytest.raises(InputError, match=message):
        chat_steerer.stream(TEXT, START, END, request_)


def test_your_words_alone_need_an_instruct_model(tiny_lens):
    for method in ("auto", "prompt"):
        with pytest.raises(InputError, match="words alone needs an instruct model"):
            Steerer(tiny_lens).stream(TEXT, START, END, SteerRequest.by_words("more mill", method=method))
