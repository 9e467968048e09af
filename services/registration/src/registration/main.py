"""Assembles the registration service: settings, runtime, store, handlers, background loops and routes."""

from __future__ import annotations

from fastapi import FastAPI

from plenary_kit import web
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings
from registration import pages
from registration.api import router
from registration.handlers import Registrations, expire_offers_forever
from registration.imports import Imports, resume_imports_forever
from registration.store import Store

SERVICE = "registration"
PORT = 8001


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    runtime = Runtime(SERVICE, settings)
    store = Store(runtime.db)
    runtime.on_prepare(store.prepare)
    registrations = Registrations(runtime.client, store, runtime.outbox, link_key=settings.link_key())
    imports = Imports(store, registrations)
    runtime.in_background(lambda: expire_offers_forever(registrations))
    runtime.in_background(lambda: resume_imports_forever(imports))
    # Imports run as tasks of the API process; they stop before the runtime closes MongoDB.
    runtime.on_stop(imports.stop)
    app = web.service_app(runtime, "Plenary registration", router)
    app.include_router(pages.router)
    app.state.store = store
    app.state.registrations = registrations
    app.state.imports = imports
    return app
