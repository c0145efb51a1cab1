"""InputPriority: analysis checkpoints sleep while input is being handled, and never for long."""

from __future__ import annotations

import threading

from morph.features.priority import InputPriority


def test_checkpoint_passes_when_no_input_is_pending():
    priority = InputPriority(hold_s=5.0)
    priority.checkpoint()
    assert priority.waited_s < 1.0  # did not hold: no input arrived


def test_checkpoint_waits_out_the_hold_after_input():
    priority = InputPriority(hold_s=0.05)
    priority.input_arrived()
    priority.checkpoint()
    assert priority.waited_s >= 0.04


def test_a_stream_of_input_cannot_stall_a_checkpoint():
    priority = InputPriority(hold_s=0.05, max_wait_s=0.2)
    stop = threading.Event()

    def typist():
        while not stop.is_set():
            priority.input_arrived()
            stop.wait(0.01)

    thread = threading.Thread(target=typist)
    thread.start()
    try:
        priority.checkpoint()
    finally:
        stop.set()
        thread.join()
    assert 0.15 <= priority.waited_s < 5.0  # held for max_wait_s, then let go
