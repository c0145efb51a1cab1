"""The end of the process when the terminal goes away or the system asks it to stop.

SIGTERM, SIGHUP (the terminal closed) and SIGQUIT: the editor's handler keeps the unsaved text in the
recovery file, synchronously, then `exit_now` ends the process at once. A normal exit waits for worker
threads (a model still loading, an analysis), and after a hang-up the terminal answers nothing, which kept
the process alive for seconds after its terminal was gone.
"""

from __future__ import annotations

import os
import signal
import termios
from typing import Any, Callable

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


def exit_now(signum: int, driver: Any = None) -> None:
    """End the process with the shell's code for `signum` (128 + signum), putting the terminal back as it
    was first unless it hung up."""
    if signum != signal.SIGHUP and driver is not None:
        _restore_terminal(driver)
    os._exit(128 + signum)


def _restore_terminal(driver: Any) -> None:
    try:
        fileno = driver.fileno
        attrs = getattr(driver, "attrs_before", None)
        if attrs is not None:
            termios.tcsetattr(fileno, termios.TCSANOW, attrs)
        os.write(fileno, _RESET)
    except Exception:  # noqa: BLE001 - a terminal that cannot be restored must not stop the exit
        pass
