"""The one place the version is written: the package, the wheel and the worker handshake read it."""

__version__ = "0.2.0"
