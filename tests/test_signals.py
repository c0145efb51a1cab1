"""The editor in a real terminal (a pseudo-terminal): SIGTERM, SIGHUP, SIGQUIT and the terminal closing half a
second after typing lose nothing (the text is in the recovery file) and the process is gone within seconds."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


class Terminal:
    """`morph --no-model FILE` on a pseudo-terminal of its own (its controlling terminal)."""

    def __init__(self, tmp: Path, doc: Path, controlling: bool = True):
        """`controlling=False`: the terminal is the editor's input and output but not its controlling terminal
        (a session of its own without one, as under setsid): closing it sends no SIGHUP."""
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))

        def own_terminal() -> None:
            os.setsid()
            if controlling:
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        env = {**os.environ, "TERM": "xterm-256color", "MORPH_CONFIG_DIR": str(tmp / "config"),
               "MORPH_STATE_DIR": str(tmp / "state"), "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "morph", "--no-model", str(doc)], cwd=REPO, env=env,
                                     stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal,
                                     close_fds=True)
        os.close(slave)
        self.output = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def wait_for(self, text: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.proc.poll() is None, bytes(self.output[-2000:])
            assert time.monotonic() < deadline, f"{text!r} never appeared"
            time.sleep(0.05)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        try:
            os.close(self.master)
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def recovered_texts(state: Path) -> list[str]:
    folder = state / "recovery"
    return [json.loads(f.read_text())["text"] for f in folder.glob("*.json")] if folder.is_dir() else []


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGQUIT", "terminal closed"])
def test_nothing_typed_is_lost_and_the_process_ends(tmp_path, how):
    doc = tmp_path / "draft.txt"
    doc.write_text("saved line\n")
    (tmp_path / "config").mkdir()
    # A long autosave interval: what is typed after the first autosave reaches the file only through the signal.
    (tmp_path / "config" / "config.toml").write_text("autosave_seconds = 3600\n")
    term = Terminal(tmp_path, doc)
    try:
        term.wait_for(b"draft.txt")
        time.sleep(0.5)
        term.type("A")
        deadline = time.monotonic() + 20
        while "Asaved line\n" not in recovered_texts(tmp_path / "state"):  # the first edit's autosave
            assert time.monotonic() < deadline, "no autosave after the first edit"
            time.sleep(0.05)
        term.type(" and words typed just before the end")
        time.sleep(0.5)
        started = time.monotonic()
        if how == "terminal closed":
            os.close(term.master)
            expected = signal.SIGHUP
        else:
            expected = getattr(signal, how)
            term.proc.send_signal(expected)
        code = term.proc.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        term.close()
    assert took < 3, f"still running {took:.1f} s after {how}"
    assert code == 128 + expected
    assert recovered_texts(tmp_path / "state") == ["A and words typed just before the endsaved line\n"]
    assert doc.read_text() == "saved line\n"


def test_a_terminal_lost_without_a_sighup_loses_nothing_and_the_process_ends(tmp_path):
    """No SIGHUP comes (the terminal is not the editor's controlling terminal): Textual's input thread read
    end-of-file in a busy loop for ever; the editor notices the hang-up itself, keeps the text, and ends."""
    doc = tmp_path / "draft.txt"
    doc.write_text("saved line\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("autosave_seconds = 3600\n")
    term = Terminal(tmp_path, doc, controlling=False)
    try:
        term.wait_for(b"draft.txt")
        time.sleep(0.5)
        term.type("A")
        deadline = time.monotonic() + 20
        while "Asaved line\n" not in recovered_texts(tmp_path / "state"):  # the first edit's autosave
            assert time.monotonic() < deadline, "no autosave after the first edit"
            time.sleep(0.05)
        term.type(" and words typed just before the end")
        time.sleep(0.5)
        os.close(term.master)
        code = term.proc.wait(timeout=20)  # it used to spin at 100% of a core, never ending
    finally:
        term.close()
    assert code == 128 + signal.SIGHUP
    assert recovered_texts(tmp_path / "state") == ["A and words typed just before the endsaved line\n"]
    assert doc.read_text() == "saved line\n"
