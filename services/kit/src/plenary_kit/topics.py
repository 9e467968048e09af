"""Kafka topic names, one per owning service, and their dead-letter twins."""

from typing import Final

REGISTRATION: Final = "registration.v1"
TICKETING: Final = "ticketing.v1"
NOTIFICATIONS: Final = "notifications.v1"
CHECKIN: Final = "checkin.v1"

ALL: Final = (REGISTRATION, TICKETING, NOTIFICATIONS, CHECKIN)

# Several partitions so a service can scale out as consumer-group members,
# while the key (the aggregate id) keeps one attendee's events in order.
PARTITIONS: Final = 6


def dead_letter(topic: str) -> str:
    return f"{topic}.dlq"


def topic_for_source(source: str) -> str:
    """The topic a service publishes to, named after the service."""
    return {
        "registration": REGISTRATION,
        "ticketing": TICKETING,
        "notifications": NOTIFICATIONS,
        "checkin": CHECKIN,
    }[source]


def topic_for_event_type(event_type: str) -> str:
    """`ticket.issued` lives on the ticketing topic, and so on."""
    return {
        "registration": REGISTRATION,
        "ticket": TICKETING,
        "notification": NOTIFICATIONS,
        "attendance": CHECKIN,
    }[event_type.split(".", 1)[0]]
