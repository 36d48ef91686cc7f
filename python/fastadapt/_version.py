"""The package version, in a module of its own so that library modules (the
CLI, the MNIST job) can read it without importing the package face."""

__version__ = "0.1.0"
"""The installed fastadapt's version (PEP 440)."""
