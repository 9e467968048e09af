"""Runs one service under uvicorn; the port comes from PLENARY_<SERVICE>_PORT or the contract default."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from plenary_kit.settings import ServiceSettings

KEEP_ALIVE_SECONDS = 65


def serve(service: str, create_app: Callable[[ServiceSettings], FastAPI], default_port: int) -> None:
    settings = ServiceSettings()
    port = int(os.environ.get(f"PLENARY_{service.upper()}_PORT", default_port))
    app = create_app(settings)
    # Modules, routes and models live as long as the process: move them out of the collector's sight so
    # that its full passes walk only what requests and events create (tens of milliseconds otherwise).
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.plenary_host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        # Longer than the idle timeout of the proxies and load balancers in front (60 s is common), so a
        # connection is never closed here just as a proxy or a phone sends the next request on it.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
