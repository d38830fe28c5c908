"""``python -m recsys``: the ``recsys`` command where the console script is not installed, as in
the bento's container image, which ships the source tree but not the package's entry points
(the Helm chart's jobs run it this way)."""

import sys

from recsys.cli import main

sys.exit(main())
