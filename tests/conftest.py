"""Fixtures and settings shared by the whole suite.

Each test folder has its own ``conftest.py`` for its fixtures (providers, loopback servers); this one
only holds what every test needs: numpy's BLAS pinned to one thread, set before numpy is imported,
because on a 2-core machine shared with other work the default thread pool makes small matrix
operations several times slower and their timing erratic.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
