"""``python -m serve EXPORT_DIR [--host H] [--port P] ...``: the HTTP server.

See :func:`serve.server.main` and ``python -m serve --help``.
"""

import sys

from serve.server import main

if __name__ == "__main__":
    sys.exit(main())
