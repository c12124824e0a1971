"""A query's matrix products run on one BLAS thread.

A query's products are small (one vector, or the regional pass's few dozen, against the
collection) and run beside the model's and the verifier's own threads. NumPy's BLAS splits
them over every core with worker threads that busy-wait for work: on a small, shared CPU
this costs up to three times the CPU of one thread and makes a query wait for a thread that
is not scheduled (measured in docs/benchmarks.md, "Query stage costs"). Each output is the
same dot product whichever thread computes it, so rankings do not change.

The limit is process-wide (BLAS has no per-call setting): it is set when the first of any
concurrent queries starts and restored when the last one ends, on whichever threads they run
(a server's request threads). threadpoolctl (3.8 on) lets only the first thread that set
OpenBLAS's limit set it again and silently ignores the others, so each change here frees
that role first: this module's lock already keeps concurrent queries from fighting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_limiter = None  # threadpoolctl's limit while any query runs


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the ``with`` block's matrix products on one BLAS thread (nothing to do in a
    process started with one, as ``lookalike search`` is: finding the libraries would cost
    a fresh process more than its products)."""
    global _active, _limiter
    if os.environ.get("OPENBLAS_NUM_THREADS") == "1":
        yield
        return
    with _lock:
        if _active == 0:
            from threadpoolctl import ThreadpoolController

            # Looked up each time (a fraction of a millisecond): a BLAS loaded since the
            # last query (SciPy's own OpenBLAS) is limited too.
            _free_openblas_limit()
            _limiter = ThreadpoolController().limit(limits=1, user_api="blas")
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _limiter is not None:
                _free_openblas_limit()  # the query that ends last may run on another thread
                _limiter.restore_original_limits()
                _limiter = None
                _free_openblas_limit()  # and whoever sets it next may too


def _free_openblas_limit() -> None:
    """Let any thread set OpenBLAS's limit next (threadpoolctl before 3.8 always does)."""
    import threadpoolctl

    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
