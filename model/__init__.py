"""Mozart reference model: pure Python and numpy, no HDL toolchain needed.

Import the pieces you need, e.g. ``from mozart.model.config import load_config``.
"""
