"""The writing surface's one stream of edits (DocumentView.subscribe): every typed edit, undo, redo, load and
replace_span is published once, with the region it changed and the edit count, which is the one edit counter."""

from __future__ import annotations

import random

from textual.app import App, ComposeResult

from morph.editor.document import DocumentView, TextEdit

TEXT = "The river ran past the old mill.\n\nIn the evening the lamps were lit.\nSailors sang.\n"


class One(App):
    def compose(self) -> ComposeResult:
        yield DocumentView(TEXT)


def _explains(change: TextEdit, before: str, after: str) -> bool:
    """`after` is `before` with before[start:old_end] replaced by after[start:new_end]."""
    return (after[:change.start] == before[:change.start]
            and after[change.new_end:] == before[change.old_end:]
            and change.new_end - change.old_end == len(after) - len(before))


async def test_every_change_is_published_once_with_its_region_and_count():
    app = One()
    async with app.run_test() as pilot:
        view = app.query_one(DocumentView)
        seen: list[TextEdit] = []
        unsubscribe = view.subscribe(seen.append)
        rng = random.Random(5)
        for step in range(80):
            before, count = view.text, view.edit_count
            row = rng.randrange(view.document.line_count)
            column = rng.randint(0, len(view.document[row]))
            choice = rng.random()
            if choice < 0.45:
                view.insert(rng.choice(["a", " ", "word ", "\n", "two\nlines "]), (row, column))
                kind = "edit"
            elif choice < 0.65:
                view.delete((max(0, row - rng.randint(0, 1)), 0), (row, column))
                kind = "edit"
            elif choice < 0.85:
                view.undo()
                kind = "undo"
            else:
                view.redo()
                kind = "redo"
            if step % 7 == 0:
                view.history.checkpoint()  # undo batches of several edits, too
            after = view.text
            assert len(seen) == view.edit_count  # subscribed at count 0: one event per change counted
            if view.edit_count == count:  # nothing to undo or redo: nothing published, nothing changed
                assert kind in ("undo", "redo") and after == before
                continue
            change = seen[-1]
            assert change.kind == kind and change.count == view.edit_count == count + 1
            assert _explains(change, before, after), (change, before, after)
        assert [c.count for c in seen] == list(range(1, len(seen) + 1))

        view.load_text(TEXT)
        before, count = view.text, view.edit_count
        assert before == TEXT and seen[-1].kind == "load" and seen[-1].count == count
        start = before.index("lamps")
        result = view.replace_span(start, start + len("lamps"), "lanterns")
        assert view.text == before[:start] + "lanterns" + before[start + len("lamps"):]
        assert seen[-1] == TextEdit(start, start + len("lamps"), start + len("lanterns"), count + 1, "edit")
        assert view.offset_of(result.end_location) == start + len("lanterns")
        view.undo()  # one undo step takes the whole replacement back
        assert view.text == before and seen[-1].kind == "undo"

        view.load_text("another text")
        assert seen[-1] == TextEdit(0, len(before), len("another text"), view.edit_count, "load")
        told = len(seen)
        unsubscribe()
        view.insert("x")
        assert len(seen) == told
        await pilot.pause()


async def test_nothing_to_undo_publishes_and_counts_nothing():
    app = One()
    async with app.run_test() as pilot:
        view = app.query_one(DocumentView)
        seen: list[TextEdit] = []
        view.subscribe(seen.append)
        view.undo()
        view.redo()
        assert seen == [] and view.edit_count == 0
        await pilot.pause()
