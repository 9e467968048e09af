"""Assembles the notifications service: settings, runtime, store, handlers, sender and routes."""

from __future__ import annotations

from fastapi import FastAPI

from notifications.api import router
from notifications.compose import Composer
from notifications.handlers import Notifications
from notifications.rate import SendRate
from notifications.scheduler import Scheduler
from notifications.sender import Sender
from notifications.settings import NotificationSettings
from notifications.store import Store
from plenary_kit import web
from plenary_kit.runtime import Runtime
from plenary_kit.settings import ServiceSettings

SERVICE = "notifications"
PORT = 8003


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    config = NotificationSettings.from_shared(settings or NotificationSettings())
    runtime = Runtime(SERVICE, config)
    store = Store(runtime.db)
    runtime.on_prepare(store.prepare)
    rate = SendRate(store.send_windows, config.notifications_send_rate)
    sender = Sender(
        runtime.client,
        store,
        runtime.outbox,
        Composer(config.mail_from),
        config,
        rate,
        concurrency=config.notifications_send_concurrency,
    )
    notifications = Notifications(
        store,
        runtime.outbox,
        link_key=config.link_key(),
        public_url=config.plenary_public_url,
        reminder_lead=config.reminder_lead,
        thank_you_delay=config.thank_you_delay,
        on_enqueued=sender.nudge,
    )
    runtime.subscribe(notifications.subscriptions())
    runtime.in_background(sender.run)
    runtime.in_background(Scheduler(runtime.client, store, config, on_enqueued=sender.nudge).run)
    app = web.service_app(runtime, "Plenary notifications", router)
    app.state.store = store
    app.state.sender = sender
    app.state.notifications = notifications
    return app
