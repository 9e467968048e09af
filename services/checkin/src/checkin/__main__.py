"""`python -m checkin` runs the service; `python -m checkin rebuild` rebuilds its ticket projection."""

import sys

from checkin.main import PORT, SERVICE, create_app
from plenary_kit.serve import serve

if sys.argv[1:] == ["rebuild"]:
    from checkin.rebuild import main

    main()
elif sys.argv[1:]:
    sys.exit("usage: python -m checkin [rebuild]")
else:
    serve(SERVICE, create_app, PORT)
