"""Process-wide tuning applied once a web or worker process has started.

The garbage collector's full collections walk every tracked object. Most of a started process's
objects (modules, the app, its routes, the container, the embedding model's tables) live as long
as the process; `settle_heap` moves them into the permanent generation (`gc.freeze`), so full
collections skip them and the event loop stalls for less. It can also make young collections
rarer (a larger generation-0 threshold). https://docs.python.org/3/library/gc.html#gc.freeze
"""

from __future__ import annotations

import gc

import structlog

log = structlog.get_logger(__name__)

# Allocations, less deallocations, between young collections (CPython's default is 700).
GEN0_THRESHOLD = 10_000


def settle_heap(*, raise_threshold: bool = True) -> int:
    """Collect once (garbage of the start-up is not frozen with the rest), then freeze what is
    left; with `raise_threshold`, young collections run every `GEN0_THRESHOLD` allocations.
    Returns how many objects are frozen. Call it once start-up is done, before serving."""
    gc.collect()
    gc.freeze()
    if raise_threshold:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(max(GEN0_THRESHOLD, gc.get_threshold()[0]), gen1, gen2)
    frozen = gc.get_freeze_count()
    log.info("process.heap_settled", frozen_objects=frozen, gc_threshold=list(gc.get_threshold()))
    return frozen
