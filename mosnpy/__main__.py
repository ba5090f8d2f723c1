"""``python -m mosnpy`` is the ``mosnpy`` command."""

import sys

from mosnpy.cli import main

sys.exit(main())
