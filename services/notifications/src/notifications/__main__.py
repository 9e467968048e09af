"""`python -m notifications` runs the service."""

from notifications.main import PORT, SERVICE, create_app
from plenary_kit.serve import serve

serve(SERVICE, create_app, PORT)
