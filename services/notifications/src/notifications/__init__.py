"""Notifications service: delegates' confirmation, waiting-list and cancellation emails."""
