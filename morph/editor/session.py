"""The document session: which file the text is, whether it is modified, and that no text is ever lost.

`DocumentSession` holds the path and the file as on disk (`loaded`), the modified state (an undo or redo back to
the text on disk is unmodified again), and this window's recovery file: between saves the text is written there
(in a thread) at most `autosave_seconds` after an edit, while typing too, and every AUTOSAVE_EDITS edits; and
synchronously when the app exits, is told to stop or loses its terminal (`emergency_recovery`). Another window's
recovery whose text differs from the file is offered when the file is opened. Saves are atomic (morph.textio)
and keep the file's line endings and BOM; a save, a discard or an undo back to the file removes the recovery
file, and its epoch makes that win over an autosave still on its way.

The flows (save, save as, open, new, quit) ask through the app's dialogs (`app.ask`, one flow at a time: the
app's key policy); they run as the app's "file" workers.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from morph.editor.dialogs import ConfirmScreen, OpenFileScreen, RecoveryScreen, SaveAsScreen
from morph.features.highlights import Overlay

if TYPE_CHECKING:
    from morph.editor.app import MorphApp
    from morph.textio import LoadedText

WAITING_NOTE = "recovered text is waiting (palette: File: recovered text)"
AUTOSAVE_EDITS = 200  # a recovery file is written after this many edits (~characters typed), whatever the time


def describe_on_disk(path: Path | None) -> LoadedText | None:
    """The on-disk state of `path` for an app started without one (None if untitled or unreadable)."""
    if path is None:
        return None
    from morph.errors import MorphError
    from morph.textio import read_document

    try:
        return read_document(path, allow_invalid_utf8=True)
    except MorphError:
        return None


def same_file(a: Path | str, b: Path | str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


class DocumentSession:
    """Path, modified state, recovery and autosave, and the save / open / new / quit flows (see the module)."""

    def __init__(self, app: MorphApp, path: str | None, text: str, loaded: LoadedText | None) -> None:
        from morph.recovery import new_session

        self.app = app
        self.path = Path(os.path.abspath(path)) if path else None
        self.loaded = loaded if loaded is not None else describe_on_disk(self.path)
        """The file as on disk (morph.textio.LoadedText) when it was opened or last saved; None: untitled."""
        self.modified = False
        self.clean_text = text  # the text as on disk (or as started): undoing back to it is unmodified
        self.history_moved = False  # an undo or redo is under way: its change may lead back to clean_text
        self._ignore_changes = 0  # Changed events of loads (not edits) still to come
        self.recovery_session = new_session()
        """This window's recovery files are its own (morph.recovery): other windows never write over them."""
        # written in a thread; the lock and epoch make a save's discard win over a late autosave
        self._recovery_lock = threading.Lock()
        self._recovery_epoch = 0
        self._recovery_dirty = False
        self._discarded = False
        self._edits_since_autosave = 0
        self._last_autosave = float("-inf")  # the first edit is written at the next tick
        self._disk_change_told: tuple | None = None  # the change on disk the writer was last told of
        self._autosave_error: str | None = None

    # --- what is shown ----------------------------------------------------------------------------------
    def file_label(self) -> str:
        if self.path is None:
            return "untitled"
        name = self.path.name
        if self.loaded is not None and self.loaded.read_only:
            return f"{name} (read-only)"
        if self.loaded is not None and self.loaded.is_new:
            return f"{name} (new file)"
        return name

    def show_file(self) -> None:
        label = self.file_label()
        self.app.sub_title = ("● " if self.modified else "") + label
        self.app.status.update_state(file=label, modified=self.modified)

    def announce_file(self) -> None:
        loaded, app = self.loaded, self.app
        if loaded is None:
            return
        if loaded.note:
            app.notify(loaded.note, title="Opened read-only" if loaded.read_only else "Note", severity="warning",
                       timeout=15)
        if loaded.mixed_newlines:
            shown = {"\n": "LF", "\r\n": "CRLF", "\r": "CR"}[loaded.newline]
            app.notify(f"{loaded.path.name} mixes line endings: it will be saved with {shown} throughout",
                       severity="warning")

    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    # --- edits ------------------------------------------------------------------------------------------
    def text_changed(self) -> None:
        """The text changed (TextArea.Changed): modified, unless a load or an undo back to the file."""
        if self._ignore_changes:
            self._ignore_changes -= 1  # a file was loaded: not an edit
        elif self.history_moved and self.app.view.text == self.clean_text:
            self.history_moved = False
            self._back_to_clean()
        else:
            self.history_moved = False
            self.modified = True
            self._recovery_dirty = True
            self._edits_since_autosave += 1
            if self._edits_since_autosave >= AUTOSAVE_EDITS:
                self.autosave()
            self.show_file()

    def _back_to_clean(self) -> None:
        """Undo or redo led back to the text on disk: not modified, and this window's recovery file goes."""
        from morph.recovery import discard_recovery

        self.modified = False
        self._recovery_dirty = False
        self._edits_since_autosave = 0
        with self._recovery_lock:  # rare (an undo), and an unlink: done here, so no later autosave is lost
            self._recovery_epoch += 1
            discard_recovery(self.path, self.recovery_session)
        self.show_file()

    def check_disk(self) -> None:
        """Back in the terminal: say so if the file changed on disk meanwhile (once per change; in a thread)."""
        path, loaded = self.path, self.loaded
        if path is not None and loaded is not None and not loaded.is_new:
            self.app.run_worker(partial(self._check_disk, path, loaded), thread=True, group="disk", exclusive=True,
                                exit_on_error=False, name="changed on disk")

    def _check_disk(self, path: Path, loaded: LoadedText) -> None:
        from morph.textio import changed_on_disk

        if not changed_on_disk(path, loaded):
            return
        try:
            st = os.stat(path)
            change = (str(path), loaded.sha256, st.st_mtime_ns, st.st_size)
        except OSError:
            change = (str(path), loaded.sha256, None, None)  # deleted
        if change == self._disk_change_told:
            return
        self._disk_change_told = change
        what = "has changed on disk" if change[2] is not None else "is no longer on disk"
        self.app.call_from_thread(
            self.app.notify, f"{path.name} {what} since Morph opened it; saving will ask before replacing it",
            title="Changed on disk", severity="warning", timeout=15)

    # --- flows ------------------------------------------------------------------------------------------
    async def save(self, *, save_as: bool = False) -> bool:
        """Save (asking for a name if there is none, or if `save_as`); True if the text is on disk."""
        from morph.textio import changed_on_disk

        app = self.app
        target = None if save_as else self.path
        loaded = self.loaded
        if target is not None and loaded is not None and loaded.read_only and same_file(target, loaded.path):
            app.notify(f"{target.name} was opened read-only (it is not valid UTF-8): save it under another name",
                       title="Save as", severity="warning", timeout=10)
            target = None
        if target is None:
            initial = str(self.path) if self.path is not None else ""
            target = await app.ask(SaveAsScreen(initial=initial, base_dir=self.base_dir()))
            if target is None:
                return False
        if (self.path is not None and loaded is not None and same_file(target, self.path)
                and await asyncio.to_thread(changed_on_disk, target, loaded)):
            choice = await app.ask(ConfirmScreen(
                f"{target.name} has changed on disk since Morph opened it. Replace it with your text?",
                title="File changed on disk", yes="Overwrite", no="Save as…", cancel="Cancel", default="cancel"))
            if choice == "no":
                return await self.save(save_as=True)
            if choice != "yes":
                return False
        return await self._write(Path(target))

    async def _write(self, target: Path) -> bool:
        from morph.errors import MorphError
        from morph.recovery import discard_recovery
        from morph.textio import write_document

        app = self.app
        text, generation, like, old_path = app.view.text, app.generation, self.loaded, self.path

        def write() -> LoadedText:
            written = write_document(target, text, like)
            with self._recovery_lock:  # a late autosave must not bring back a recovery file
                self._recovery_epoch += 1
                if old_path is None or not same_file(old_path, target):
                    discard_recovery(old_path, self.recovery_session)
                discard_recovery(target, self.recovery_session)
            return written

        app.status.update_state(note="saving…")
        try:
            written = await asyncio.to_thread(write)
        except MorphError as err:
            app.status.update_state(note="not saved")
            app.notify(str(err), title="Not saved: your text is still here", severity="error", timeout=20)
            return False
        app.status.update_state(note="")
        self.path, self.loaded = written.path, written
        if app.generation == generation:
            self.clean_text = text
            self.modified = False
            self._recovery_dirty = False
        self.show_file()
        app.notify(f"saved {target.name}", timeout=3)
        return True

    async def settle_changes(self, doing: str) -> bool:
        """Before the text is closed: ask to save unsaved changes. True: go on."""
        if not self.modified:
            return True
        name = self.path.name if self.path is not None else "The untitled document"
        choice = await self.app.ask(ConfirmScreen(
            f"{name} has unsaved changes. Save them before {doing}?",
            title="Unsaved changes", yes="Save", no="Discard", cancel="Cancel"))
        if choice == "yes":
            return await self.save()
        if choice == "no":
            self._discard_changes()
            return True
        return False

    def _discard_changes(self) -> None:
        from morph.recovery import discard_recovery

        with self._recovery_lock:  # this window's own file; another window's, kept for later, stays
            self._recovery_epoch += 1
            discard_recovery(self.path, self.recovery_session)
        self.modified = False
        self._recovery_dirty = False
        self._discarded = True

    async def quit_flow(self) -> None:
        if await self.settle_changes("quitting"):
            self.app.exit()

    async def open_flow(self, path: Path | None = None) -> None:
        from morph.errors import InputError
        from morph.textio import read_document

        app = self.app
        if path is None:
            path = await app.ask(OpenFileScreen(base_dir=self.base_dir()))
            if path is None:
                return
        limit = app.settings.max_file_bytes
        try:
            loaded = await asyncio.to_thread(read_document, path, max_bytes=limit)
        except InputError as err:
            try:
                lenient = await asyncio.to_thread(read_document, path, max_bytes=limit, allow_invalid_utf8=True)
            except InputError:
                lenient = None
            if lenient is None or not lenient.read_only:
                app.notify(str(err), title="Not opened", severity="error", timeout=15)
                return
            choice = await app.ask(ConfirmScreen(
                f"{Path(path).name} is not valid UTF-8. Open it read-only, with the bad bytes shown as \ufffd? "
                "(You can save it under another name.)",
                title="Not UTF-8", yes="Open read-only", no="Don't open", cancel=None, default="no"))
            if choice != "yes":
                return
            loaded = lenient
        if not await self.settle_changes("opening another file"):
            return
        self._load(loaded)
        await self.offer_recovery()

    async def new_flow(self) -> None:
        if await self.settle_changes("starting a new document"):
            self._load(None)

    def _load(self, loaded: LoadedText | None) -> None:
        """Replace the document with a file's text (or an empty untitled one)."""
        app = self.app
        self.path = loaded.path if loaded is not None else None
        self.loaded = loaded
        self._ignore_changes += 1
        self.clean_text = loaded.text if loaded is not None else ""
        app.view.load_text(self.clean_text)
        app.view.move_cursor((0, 0))
        self.modified = False
        self._recovery_dirty = False
        self._edits_since_autosave = 0
        self._discarded = False
        app.live.pinned = None
        app.live.analysis = None
        app.view.set_overlay(Overlay.empty())
        app.status.update_state(note="", chars=len(app.view.text))
        self.show_file()
        self.announce_file()
        if app.engine is not None:
            app.panel.show_message("analysing…")

    async def offer_recovery(self) -> None:
        """Offer each recovery of another window (newest first) whose text differs from the file on disk."""
        from morph.recovery import discard, find_recoveries

        app = self.app
        for rec in await asyncio.to_thread(find_recoveries, self.path, self.recovery_session):
            loaded = self.loaded
            on_disk = loaded.text if loaded is not None and not loaded.is_new else None
            name = self.path.name if self.path is not None else "an untitled document"
            choice = await app.ask(RecoveryScreen(name, rec.text, on_disk, rec.saved_at))
            if choice == "restore":
                app.view.replace(rec.text, (0, 0), app.view.document.end)
                app.view.move_cursor((0, 0))
                app.status.update_state(note="")
                # The text is this window's now: in its own recovery file before the other one goes.
                await asyncio.to_thread(self._write_recovery_now, self.path, app.view.text, self._recovery_epoch)
                await asyncio.to_thread(discard, rec)
                app.notify(f"recovered text restored (not saved yet: {app.key_name('save')} to save; "
                           f"{app.key_name('undo')} undoes)", timeout=8)
                return
            if choice == "discard":
                await asyncio.to_thread(discard, rec)
                continue
            app.status.update_state(note=WAITING_NOTE)
            return
        if app.status.state.note == WAITING_NOTE:
            app.status.update_state(note="")

    async def offer_recovered_text(self) -> None:
        """The palette's "recovered text": offer this document's recovery, or say there is none."""
        from morph.recovery import find_recovery

        if await asyncio.to_thread(find_recovery, self.path, self.recovery_session) is None:
            self.app.notify("there is no recovered text for this document")
            return
        await self.offer_recovery()

    # --- autosave and recovery ------------------------------------------------------------------
    def autosave_tick(self) -> None:
        """Unsaved edits reach this window's recovery file at most `autosave_seconds` after they were made,
        while typing as well as after it (and after AUTOSAVE_EDITS edits, see text_changed)."""
        if self._recovery_dirty and time.monotonic() - self._last_autosave >= self.app.settings.autosave_seconds:
            self.autosave()

    def autosave(self) -> None:
        self._recovery_dirty = False
        self._edits_since_autosave = 0
        self._last_autosave = time.monotonic()
        # The lines as they are now, joined in the worker (joining a 50 MB text here stalled typing ~50 ms)
        text, path, epoch = self.app.view.document.snapshot(), self.path, self._recovery_epoch
        self.app.run_worker(partial(self._write_snapshot, path, text, epoch), thread=True, group="autosave",
                            exit_on_error=False, name="autosave", description="autosave")

    def _write_snapshot(self, path: Path | None, text: Callable[[], str], epoch: int) -> None:
        self._write_recovery_now(path, text(), epoch)

    def _write_recovery_now(self, path: Path | None, text: str, epoch: int) -> None:
        from morph.errors import MorphError
        from morph.recovery import save_recovery

        with self._recovery_lock:
            if epoch != self._recovery_epoch:
                return  # saved or discarded since: this text is not needed
            try:
                save_recovery(path, text, self.recovery_session)
            except MorphError as err:
                if self._autosave_error != str(err):
                    self._autosave_error = str(err)
                    self.app.call_from_thread(self.app.notify, str(err), title="Autosave failed", severity="error",
                                              timeout=15)
            else:
                self._autosave_error = None

    def emergency_recovery(self, text: Callable[[], str] | None) -> None:
        """The app is going away with unsaved text (`text()`, None: no document): keep it in the recovery file,
        now (this may run in a signal handler, on the main thread, so the lock is not waited on for long)."""
        if text is None or not self.modified or self._discarded:
            return
        try:
            from morph.recovery import save_recovery

            locked = self._recovery_lock.acquire(timeout=1.0)
            try:
                save_recovery(self.path, text(), self.recovery_session)
            finally:
                if locked:
                    self._recovery_lock.release()
        except Exception:  # noqa: BLE001 - nothing more can be done while exiting
            pass
