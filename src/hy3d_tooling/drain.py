"""Graceful drain before tritonserver stops: no new requests, the ones in flight finish.

Triton's own SIGTERM handling stops every model at once, so an ensemble request in flight fails at its
next step (UNAVAILABLE). The launcher drains first: it unloads the entry models (those no ensemble uses
as a step, e.g. ``hy3d_ensemble``, ``hy3d_stream``). Triton then refuses new requests to them, readiness
is false while they unload, and each one finishes its requests in flight, whose steps still run on the
loaded stages. Only then is tritonserver sent SIGTERM, and it waits for direct stage calls in turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from . import model_control

logger = logging.getLogger("hy3d_tooling.drain")

#: Seconds between two looks at the unloading models.
POLL_INTERVAL_S = 0.5


def drain(http_url: str, timeout_s: float, abort: Callable[[], bool] = lambda: False) -> bool:
    """Unload the entry models and wait until their requests in flight are done.

    Returns True when drained, False after ``timeout_s`` or when ``abort()`` turns true (a second
    signal) with requests still in flight.
    """
    started = time.monotonic()
    try:
        entries = model_control.entry_models(http_url)
        logger.info("draining: %s take no new requests; waiting up to %.0f s for the ones in flight",
                    ", ".join(entries) or "no model", timeout_s)
        for model in entries:
            model_control.unload(http_url, model)
        while not abort():
            index = model_control.repository_index(http_url)
            busy = [m for m in entries if index.get(m) in (model_control.READY, model_control.UNLOADING)]
            if not busy:
                logger.info("drained in %.1f s", time.monotonic() - started)
                return True
            if time.monotonic() - started >= timeout_s:
                logger.warning("drain timed out after %.1f s with requests in flight in %s",
                               time.monotonic() - started, ", ".join(busy))
                return False
            time.sleep(POLL_INTERVAL_S)
        logger.warning("drain stopped by a second signal after %.1f s", time.monotonic() - started)
        return False
    except model_control.ModelControlError as error:
        logger.error("drain failed: %s", error)
        return False
