"""Prometheus metrics every service exposes on /metrics."""

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Histogram(
    "plenary_http_request_seconds",
    "HTTP request latency by route and status",
    ["service", "method", "route", "status"],
)
EVENTS_HANDLED = Counter(
    "plenary_events_handled_total", "Consumed events by outcome", ["consumer", "type", "outcome"]
)
EVENT_SECONDS = Histogram("plenary_event_handling_seconds", "Time to handle one event", ["consumer"])
DEAD_LETTERS = Counter("plenary_dead_letters_total", "Events sent to a dead-letter topic", ["consumer"])
OUTBOX_PUBLISHED = Counter("plenary_outbox_published_total", "Outbox events published", ["service"])
