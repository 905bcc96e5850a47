"""Repository-level pytest configuration.

The EdgeLab plugin itself is loaded through its ``pytest11`` entry point (``pip install -e .``).
``pytester`` drives the plugin end to end in the harness's own tests (tests/test_plugin.py).
"""

pytest_plugins = ["pytester"]
