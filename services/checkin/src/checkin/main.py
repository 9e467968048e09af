"""Assembles the checkin service: settings, runtime, store, projection, handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from checkin import pages
from checkin.api import router
from checkin.door import Scans
from checkin.handlers import Devices, Projection
from checkin.store import Store
from checkin.views import LiveAttendance, Snapshots
from plenary_kit import web
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings

SERVICE = "checkin"
PORT = 8004


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    runtime = Runtime(SERVICE, settings or ServiceSettings())
    store = Store(runtime.db)
    runtime.on_prepare(store.prepare)
    runtime.subscribe(Projection(store).handlers())
    app = web.service_app(runtime, "Plenary checkin", router)
    app.include_router(pages.router)
    app.state.store = store
    live = LiveAttendance(store)
    app.state.live = live
    devices = Devices(store)
    app.state.devices = devices
    app.state.scans = Scans(runtime.client, store, runtime.outbox, on_decided=live.changed, on_seen=devices.seen)
    app.state.snapshots = Snapshots(store)
    return app
