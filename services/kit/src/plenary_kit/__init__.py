"""Shared event kit for the Plenary services: envelope, schemas, outbox, consumer, web plumbing."""
