"""Checkin service: ticket projection, door devices, scans and live attendance."""
