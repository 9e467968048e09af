"""`python -m checkin` runs the service."""

from checkin.main import PORT, SERVICE, create_app
from plenary_kit.serve import serve

serve(SERVICE, create_app, PORT)
