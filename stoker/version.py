"""The version of the stoker distribution (kept apart so anything can read it without importing the SDK)."""

__version__ = "0.1.0"
