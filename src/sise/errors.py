"""The one exception type the package raises for bad input."""


class SiseError(ValueError):
    """Raised for bad input; the message says what went wrong and what to do instead."""
