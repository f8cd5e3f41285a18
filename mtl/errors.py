"""Errors that mean "the user asked for something that cannot work" (shown without a traceback)."""


class ConfigError(ValueError):
    """A configuration that composes but cannot be built (bad value, incompatible components)."""


class DataError(ValueError):
    """Data on disk or in memory that does not have the expected format."""
