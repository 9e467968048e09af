"""Assembles the ticketing service: settings, runtime, store, event handlers and routes."""

from __future__ import annotations

from fastapi import FastAPI

from plenary_kit import web
from plenary_kit.consumer import Batched
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings
from ticketing.api import router
from ticketing.handlers import Tickets
from ticketing.settings import TicketingSettings
from ticketing.store import Store
from ticketing.vault import Vault

SERVICE = "ticketing"
PORT = 8002


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    ticketing_settings = TicketingSettings.of(settings)
    runtime = Runtime(SERVICE, ticketing_settings)
    store = Store(runtime.db, Vault(ticketing_settings.master_key()))
    runtime.on_prepare(store.prepare)
    tickets = Tickets(store, runtime.outbox, runtime.client)
    # One handler for both: a run of confirmations and promotions is issued together.
    issuing = Batched(tickets.issue_many)
    runtime.subscribe(
        {
            "registration.confirmed": issuing,
            "registration.promoted": issuing,
            "registration.updated": tickets.reissue,
            "registration.cancelled": tickets.revoke,
            "registration.erased": tickets.erase,
        }
    )
    app = web.service_app(runtime, "Plenary ticketing", router)
    app.state.store = store
    app.state.tickets = tickets
    return app
