"""``python -m deephealth_deid`` runs the ``deid`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a worker process (spawn) imports this module
    sys.exit(main())
