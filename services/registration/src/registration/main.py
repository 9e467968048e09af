"""Assembles the registration service: settings, runtime, store, handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from plenary_kit import logs, web
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings
from registration.api import router
from registration.handlers import Registrations
from registration.store import Store

SERVICE = "registration"
PORT = 8001


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    logs.configure(SERVICE)
    runtime = Runtime(SERVICE, settings)
    store = Store(runtime.db)
    runtime.on_prepare(store.prepare)
    app = FastAPI(title="Plenary registration", version="1.0.0", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    app.state.store = store
    app.state.registrations = Registrations(runtime.client, store, runtime.outbox)
    app.state.admin_token = settings.admin_token()
    web.install(app, SERVICE, runtime.ready_checks)
    app.include_router(router)
    return app
