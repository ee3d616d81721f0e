"""``python -m deephealth_deid`` runs the ``deid`` command."""

from .cli import console_main

if __name__ == "__main__":  # not when a worker process (spawn) imports this module
    console_main()
