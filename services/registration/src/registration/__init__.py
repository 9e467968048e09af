"""Registration service: events, capacity, waiting list and delegates' registrations."""
