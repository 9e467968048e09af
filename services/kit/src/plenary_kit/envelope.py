"""CloudEvents 1.0 envelope (structured JSON mode) carrying a typed Plenary event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from plenary_kit import events


class MalformedEvent(Exception):
    """A message that is not a valid Plenary event; it can never succeed, so it is dead-lettered."""


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    source: str = Field(min_length=1)
    time: AwareDatetime
    subject: str = Field(min_length=1)
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str = Field(min_length=1)
    causationid: str | None = None
    dataversion: str = "1"
    data: dict[str, Any]

    @classmethod
    def new(
        cls,
        data: events.EventData,
        *,
        source: str,
        subject: str,
        correlation_id: str,
        causation_id: str | None = None,
    ) -> Envelope:
        event_type = events.type_of(data)
        return cls(
            id=str(uuid.uuid4()),
            type=event_type,
            source=source,
            time=datetime.now(UTC),
            subject=subject,
            correlationid=correlation_id,
            causationid=causation_id,
            dataversion=events.VERSIONS[event_type],
            data=data.model_dump(mode="json"),
        )

    def caused(self, data: events.EventData, *, source: str, subject: str) -> Envelope:
        """A follow-on event: same correlation, caused by this one."""
        return Envelope.new(
            data,
            source=source,
            subject=subject,
            correlation_id=self.correlationid,
            causation_id=self.id,
        )

    def payload(self) -> events.EventData:
        """The typed data model for this event's type; raises MalformedEvent if it does not fit."""
        model = events.MODELS.get(self.type)
        if model is None:
            raise MalformedEvent(f"unknown event type {self.type!r}")
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise MalformedEvent(f"{self.type} data invalid: {exc.error_count()} error(s)") from exc

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Envelope:
        if not raw:
            raise MalformedEvent("empty message")
        try:
            envelope = cls.model_validate_json(raw)
        except ValidationError as exc:
            raise MalformedEvent(f"not a CloudEvents envelope: {exc.error_count()} error(s)") from exc
        envelope.payload()
        return envelope
