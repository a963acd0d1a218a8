"""``keras-mergan serve EXPORT_DIR [--host H] [--port P] ...``: the HTTP server.

See :func:`keras_mergan.serve.server.main` and ``python -m keras_mergan.serve --help``.
"""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
