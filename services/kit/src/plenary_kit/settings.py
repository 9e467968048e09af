"""Settings every service shares, read from the environment (names as in CONTRACT.md)."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from plenary_kit import sealing

DEFAULT_KAFKA = "127.0.0.1:9092"
DEFAULT_MONGODB = "mongodb://127.0.0.1:27017/?directConnection=true"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = DEFAULT_KAFKA
    mongodb_uri: str = DEFAULT_MONGODB
    plenary_var: Path = Path("var")
    plenary_admin_token: str | None = None
    # Shared by registration and notifications to seal manage tokens for emailed links.
    plenary_link_key: str | None = None
    plenary_rate_limits: str = "on"
    # Database names are "<prefix>_<service>", so one test run can share a real server safely.
    plenary_db_prefix: str = "plenary"
    # Which parts this process runs; separate Deployments scale them independently.
    plenary_roles: str = "api,consumer,relay,worker"
    # Appended to consumer-group names, so separate deployments (or test runs) sharing one
    # Kafka cluster each see every event instead of splitting partitions between them.
    plenary_consumer_group_suffix: str = ""
    plenary_public_url: str | None = None
    plenary_host: str = "127.0.0.1"
    kafka_session_timeout_ms: int = 10000
    kafka_heartbeat_interval_ms: int = 1000
    consumer_max_attempts: int = 5
    consumer_retry_base_seconds: float = 0.2
    outbox_retention_days: int = 30
    # Topics a service creates when it starts before the cluster's topic job; 3 on a real cluster.
    kafka_topic_replication_factor: int = 1

    def database_name(self, service: str) -> str:
        return f"{self.plenary_db_prefix}_{service}"

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.plenary_roles.split(",") if r.strip())

    def admin_token(self) -> str:
        """The organiser token: from the environment, else var/admin.token, made at first start."""
        if self.plenary_admin_token:
            return self.plenary_admin_token
        return ensure_admin_token(self.plenary_var)


    def link_key(self) -> bytes:
        if self.plenary_link_key:
            return sealing.parse_key(self.plenary_link_key)
        return sealing.ensure_key(self.plenary_var)


def ensure_admin_token(var: Path) -> str:
    return sealing.ensure_secret_file(var / "admin.token", lambda: secrets.token_urlsafe(32))
