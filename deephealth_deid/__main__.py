"""``python -m deephealth_deid`` runs the ``deid`` command."""

import sys

from .cli import main

sys.exit(main())
