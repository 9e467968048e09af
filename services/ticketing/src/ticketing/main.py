"""Assembles the ticketing service: settings, runtime, store, event handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from plenary_kit import logs, web
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings
from ticketing.api import router
from ticketing.handlers import Tickets
from ticketing.store import Store

SERVICE = "ticketing"
PORT = 8002


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    logs.configure(SERVICE)
    runtime = Runtime(SERVICE, settings)
    store = Store(runtime.db)
    runtime.on_prepare(store.prepare)
    tickets = Tickets(store, runtime.outbox)
    runtime.subscribe(
        {
            "registration.confirmed": tickets.issue,
            "registration.promoted": tickets.issue,
            "registration.cancelled": tickets.revoke,
        }
    )
    app = FastAPI(title="Plenary ticketing", version="1.0.0", lifespan=runtime.lifespan)
    app.state.runtime = runtime
    app.state.store = store
    app.state.tickets = tickets
    app.state.admin_token = settings.admin_token()
    web.install(app, SERVICE, runtime.ready_checks)
    app.include_router(router)
    return app
