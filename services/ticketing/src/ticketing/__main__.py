"""`python -m ticketing` runs the service."""

from plenary_kit.serve import serve
from ticketing.main import PORT, SERVICE, create_app

serve(SERVICE, create_app, PORT)
