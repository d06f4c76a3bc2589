"""The package's version, in a module that imports nothing (read by the build and the CLI)."""

__version__ = "0.1.0"
