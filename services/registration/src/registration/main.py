"""Assembles the registration service: settings, runtime, store, handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from plenary_kit import web
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings
from registration.api import router
from registration.handlers import Registrations
from registration.store import Store

SERVICE = "registration"
PORT = 8001


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    runtime = Runtime(SERVICE, settings or ServiceSettings())
    store = Store(runtime.db)
    runtime.on_prepare(store.prepare)
    app = web.service_app(runtime, "Plenary registration", router)
    app.state.store = store
    app.state.registrations = Registrations(runtime.client, store, runtime.outbox)
    return app
