"""`python -m registration` runs the service."""

from plenary_kit.serve import serve
from registration.main import PORT, SERVICE, create_app

serve(SERVICE, create_app, PORT)
