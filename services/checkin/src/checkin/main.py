"""Assembles the checkin service: settings, runtime, store, projection, handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from checkin.api import router
from checkin.handlers import Devices, Projection, Scans
from checkin.store import Store
from plenary_kit import logs, web
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings

SERVICE = "checkin"
PORT = 8004


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    logs.configure(SERVICE)
    runtime = Runtime(SERVICE, settings)
    store = Store(runtime.db)
    runtime.on_prepare(store.prepare)
    runtime.subscribe(Projection(store).handlers())
    app = FastAPI(title="Plenary checkin", version="1.0.0", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    app.state.store = store
    app.state.scans = Scans(runtime.client, store, runtime.outbox)
    app.state.devices = Devices(store)
    app.state.admin_token = settings.admin_token()
    web.install(app, SERVICE, runtime.ready_checks)
    app.include_router(router)
    return app
