"""Ticketing service: signed tickets for confirmed registrations, their QR codes and signing keys."""
