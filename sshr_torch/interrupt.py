"""Ctrl-C during a run: the first asks the run to stop at the next safe point, the second stops
at once. No heavy imports, so the command line can install it before torch loads.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

__all__ = ["StopRequest"]


class StopRequest:
    """First Ctrl-C: finish the current episode (or the start-up, or the final evaluation),
    checkpoint and stop. Second: stop at once (KeyboardInterrupt). Messages go to stderr.

    A context manager that installs itself as the SIGINT handler (in the main thread only).
    Entered while another StopRequest is installed, it hands that one back instead: the
    command line installs one before torch loads, and ``train`` then shares it.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            outer = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
            if isinstance(outer, StopRequest):
                return outer
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: finishing this episode, then saving a checkpoint.", file=sys.stderr)
