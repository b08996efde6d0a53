"""``python -m exim_py``: the same entry point as the ``exim_py`` script."""

import sys

from exim_py.cli import main

sys.exit(main())
