"""Ctrl-C that is never lost in a finalizer.

Python raises KeyboardInterrupt between any two bytecodes of the main thread, also inside a
finalizer (a ``__del__``, a weakref callback such as the one that drops a finished worker
thread from ``concurrent.futures``' table). There it cannot propagate: Python prints
"Exception ignored ... KeyboardInterrupt" with a traceback and the run goes on as if nothing
was pressed. While a command runs, Ctrl-C is raised as usual, except inside a finalizer,
where it is delivered again a moment later, once the finalizer has returned.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import weakref
from collections.abc import Iterator
from types import FrameType

REDELIVER_AFTER_S = 0.02


def _in_finalizer(frame: FrameType | None) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or code.co_filename == weakref.__file__:
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _in_finalizer(frame):
        threading.Timer(REDELIVER_AFTER_S, signal.raise_signal, (signum,)).start()
        return
    raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_outside_finalizers() -> Iterator[None]:
    """Within the block, Ctrl-C that lands in a finalizer is raised just after it instead
    (main thread only, and only over Python's own handler: an embedding program keeps its)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
