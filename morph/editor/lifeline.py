"""The end of the process when the terminal goes away or the system asks it to stop.

SIGTERM, SIGHUP (the terminal closed) and SIGQUIT: the editor's handler keeps the unsaved text in the
recovery file, synchronously, then `exit_now` ends the process at once. A normal exit waits for worker
threads (a model still loading, an analysis), and after a hang-up the terminal answers nothing, which kept
the process alive for seconds after its terminal was gone.

A terminal can also go without a SIGHUP: the kernel sends one only to the terminal's session leader and its
foreground processes, so an editor started in a session of its own (setsid, some launchers and IDEs), in
the background, or whose SIGHUP is blocked, hears nothing. Textual's input thread then reads end-of-file
in a busy loop, for ever (measured: 99% of a core, the process never ended). `terminal_gone` tells, from
the terminal's own file descriptors (poll reports the hang-up), and the editor checks it twice a second.
"""

from __future__ import annotations

import os
import select
import signal
import termios
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from textual.driver import Driver

TERMINAL_CHECK_S = 0.5  # how often the editor asks whether its terminal is still there

FATAL_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

# Mouse reporting, bracketed paste, the kitty keyboard protocol and focus events off; the alternate screen
# left; the cursor shown: what Textual's driver undoes when it stops.
_RESET = (b"\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?2004l\x1b[<u"
          b"\x1b[?1004l\x1b[?1049l\x1b[?25h")


def catch_fatal_signals(handler: Callable[[int], None]) -> Callable[[], None]:
    """Call `handler(signum)` on each of FATAL_SIGNALS (install from the main thread); returns a function
    that puts the previous handlers back."""
    previous = {signum: signal.signal(signum, lambda signum, frame: handler(signum)) for signum in FATAL_SIGNALS}

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


def exit_now(signum: int, driver: Driver | None = None) -> None:
    """End the process with the shell's code for `signum` (128 + signum), putting the terminal back as it
    was first unless it hung up."""
    if signum != signal.SIGHUP and driver is not None:
        _restore_terminal(driver)
    os._exit(128 + signum)


def _restore_terminal(driver: Driver) -> None:
    try:
        fileno = driver.fileno
        attrs = getattr(driver, "attrs_before", None)
        if attrs is not None:
            termios.tcsetattr(fileno, termios.TCSANOW, attrs)
        os.write(fileno, _RESET)
    except Exception:  # noqa: BLE001 - a terminal that cannot be restored must not stop the exit
        pass


def terminal_gone(driver: Driver | None) -> bool:
    """Whether the terminal of Textual's `driver` has hung up (its other end closed), SIGHUP or not."""
    fds = {getattr(driver, "fileno", None)}
    output = getattr(driver, "_file", None)
    try:
        fds.add(output.fileno() if output is not None else None)
    except (OSError, ValueError, AttributeError):
        return True  # the output file is closed
    fds.discard(None)
    if not fds:
        return False
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)  # a hang-up, an error or a closed descriptor is always reported
    try:
        events = poller.poll(0)
    except OSError:
        return True
    return any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in events)
