"""`python -m sslkern` runs the command line, as `sslkern` does."""
import sys

from .cli import main

sys.exit(main())
