"""``python -m benchmarks``: llmc side by side with its peers (see :mod:`benchmarks.compare`)."""

import sys

from .compare import main

sys.exit(main())
