"""Helpers for driving the editor with Textual's Pilot."""

from __future__ import annotations

import asyncio


async def wait_for(pilot, condition, timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (background workers post their results meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the editor")
        await pilot.pause(0.02)
