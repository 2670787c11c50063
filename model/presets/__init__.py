"""Shipped wafer presets (TOML). List them with ``mozart config list``."""
