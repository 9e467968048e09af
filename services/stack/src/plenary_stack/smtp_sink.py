"""The embedded SMTP server: accepts every message and stores it in a Maildir, or refuses on demand.

Two ways to refuse, for tests of a mail server in trouble: `refusing` answers 421 to every
recipient, and `close_port` stops listening, so new connections are refused outright as by
a server that is down. Run as a process, SIGUSR1 closes the port and SIGUSR2 opens it again.
Mail to any address at no-such-mailbox.example is rejected for good (550), as a real
server rejects an unknown mailbox.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import mailbox
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from plenary_kit import logs
from plenary_kit.logs import get_logger

log = get_logger(__name__)

REFUSAL = "421 4.3.2 Service not available, please try again later"
# Mail for this domain bounces the way a real server rejects a mailbox that does not exist,
# so a permanent failure can be seen end to end.
NO_SUCH_MAILBOX_DOMAIN = "no-such-mailbox.example"
NO_SUCH_MAILBOX = "550 5.1.1 No such mailbox here"

# aiosmtpd logs every sender and recipient address at INFO; addresses stay out of our logs.
logging.getLogger("mail.log").setLevel(logging.WARNING)


class _MaildirHandler:
    """aiosmtpd hooks: deliver to the Maildir, or answer 421 while the sink is refusing."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self._sink.refusing:
            return REFUSAL
        if address.rpartition("@")[2].lower() == NO_SUCH_MAILBOX_DOMAIN:
            return NO_SUCH_MAILBOX
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._sink.refusing:
            return REFUSAL
        raw = envelope.original_content
        if raw is None:
            content = envelope.content
            raw = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content or b""
        self._sink.store(envelope.mail_from or "", envelope.rcpt_tos, raw)
        return "250 OK"


class SmtpSink:
    """An SMTP server on host:port whose accepted messages land in a Maildir, one file each."""

    def __init__(self, host: str, port: int, maildir: Path) -> None:
        self.host = host
        self.port = port
        self.maildir_path = maildir
        self.maildir = mailbox.Maildir(maildir, create=True)
        # Read by the server thread on every command; a plain bool flip is atomic enough for a switch.
        self.refusing = False
        self._controller: Controller | None = None
        self._port_closed = False

    def store(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        # Return-Path and Delivered-To are what a delivery agent records, so readers of the
        # Maildir see the SMTP envelope; lines use "\n" as Maildir files conventionally do.
        trace = f"Return-Path: <{mail_from}>\n" + "".join(f"Delivered-To: {rcpt}\n" for rcpt in rcpt_tos)
        self.maildir.add(trace.encode("utf-8", "surrogateescape") + raw.replace(b"\r\n", b"\n"))

    def start(self) -> None:
        if self._controller is not None:
            return
        controller = Controller(_MaildirHandler(self), hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        log.info("smtp_sink_started", host=self.host, port=self.port)

    @property
    def listening(self) -> bool:
        return self._controller is not None and not self._port_closed

    def close_port(self) -> None:
        """Stop listening: connection attempts are refused; sessions already open may finish."""
        controller = self._controller
        if controller is None or controller.server is None or self._port_closed:
            return
        server = controller.server

        async def close() -> None:
            # Closes the listening socket only; accepted connections are left to end on their own.
            server.close()

        asyncio.run_coroutine_threadsafe(close(), controller.loop).result(5)
        self._port_closed = True
        log.info("smtp_sink_port_closed", port=self.port)

    def open_port(self) -> None:
        """Listen again on the same port after `close_port`."""
        controller = self._controller
        if controller is None or not self._port_closed:
            return

        async def listen() -> asyncio.AbstractServer:
            # The controller's own factory, so new sessions are served exactly as before.
            return await controller._create_server()

        controller.server = asyncio.run_coroutine_threadsafe(listen(), controller.loop).result(5)
        self._port_closed = False
        log.info("smtp_sink_port_opened", port=self.port)

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        self._port_closed = False
        if controller is not None:
            controller.stop()
            log.info("smtp_sink_stopped", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Store every message received over SMTP in a Maildir.")
    parser.add_argument("--host", default=os.environ.get("SMTP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SMTP_PORT", "1025")))
    parser.add_argument("--maildir", type=Path, default=Path(os.environ.get("PLENARY_MAILDIR", "var/mail")))
    args = parser.parse_args(argv)
    logs.configure("smtp-sink")

    stopping = threading.Event()
    # Set by the signal handlers, applied by the loop below: True to listen, False to refuse.
    wanted = {"listening": True}

    def request_stop(signum: int, _: FrameType | None) -> None:
        stopping.set()

    def request_port(signum: int, _: FrameType | None) -> None:
        wanted["listening"] = signum == signal.SIGUSR2

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGUSR1, request_port)
    signal.signal(signal.SIGUSR2, request_port)
    sink = SmtpSink(args.host, args.port, args.maildir)
    sink.start()
    try:
        # A timed wait keeps the main thread returning to the interpreter, where signal handlers run.
        while not stopping.wait(0.05):
            if wanted["listening"] and not sink.listening:
                sink.open_port()
            elif not wanted["listening"] and sink.listening:
                sink.close_port()
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
