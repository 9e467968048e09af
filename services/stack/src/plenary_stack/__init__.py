"""The embedded stack: broker, document server, SMTP sink and the four services in one command."""
