"""``python -m sipmesh``: the same as the ``sipmesh`` command."""

import sys

from sipmesh.cli import main

sys.exit(main())
