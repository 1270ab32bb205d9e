"""The one error type for bad input data: it names the file (and index/key) and the reason."""


class DataError(ValueError):
    """Bad input data, in one line: ``DataError(f"{path}: {reason}")``."""
