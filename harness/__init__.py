"""EdgeLab: a pytest plugin and device-lab harness for on-device ML inference.

The package is imported by the pytest11 entry point and the ``edgelab`` console script.
"""

from __future__ import annotations

__version__ = "0.1.0"
