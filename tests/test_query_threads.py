"""A query's matrix products run on one BLAS thread (lookalike.query.threads), and the
process's own setting comes back once the last of any concurrent queries ends."""

from __future__ import annotations

import threading

import numpy as np
from threadpoolctl import threadpool_info

from lookalike.query.threads import one_blas_thread


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_one_thread_inside_and_restored_after_concurrent_queries():
    """A search in the main thread (the CLI, the API) limits BLAS; a query that starts and
    ends meanwhile on another thread leaves the limit alone, and the last one out restores."""
    before = blas_threads()
    assert before, "NumPy's BLAS is found"

    def other_query():
        with one_blas_thread():
            pass

    with one_blas_thread():
        assert blas_threads() == {1}
        worker = threading.Thread(target=other_query)
        worker.start()
        worker.join(10)
        assert blas_threads() == {1}  # the other query ended, this one still runs
    assert blas_threads() == before


def test_products_are_the_same_on_one_thread():
    """Why the limit leaves rankings alone: each output is one dot product, whichever
    thread computes it (a query against a collection-sized matrix, and a batch of them)."""
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(4000, 256)).astype(np.float32)
    queries = rng.normal(size=(30, 256)).astype(np.float32)
    many, one = queries @ matrix.T, queries[:1] @ matrix.T
    with one_blas_thread():
        assert np.array_equal(queries @ matrix.T, many)
        assert np.array_equal(queries[:1] @ matrix.T, one)


def test_queries_on_request_threads_limit_too():
    """A server answers on its request threads: the limit holds there too, also once the
    main thread has taken and restored it, and the last query out restores the process's
    setting whichever thread it ends on."""
    before = blas_threads()
    with one_blas_thread():  # a search on the main thread first
        pass
    seen: dict[str, set[int]] = {}
    started, finish = threading.Event(), threading.Event()

    def request():
        with one_blas_thread():
            seen["request"] = blas_threads()
            started.set()
            finish.wait(10)

    worker = threading.Thread(target=request)
    worker.start()
    assert started.wait(10)
    with one_blas_thread():  # another query starts while the request's runs ...
        finish.set()
        worker.join(10)  # ... which ends first, on its own thread
        assert blas_threads() == {1}
    assert seen["request"] == {1}
    assert blas_threads() == before
