"""Errors the engine reports as one clear paragraph (exit 2), never a traceback."""


class DataError(Exception):
    """A problem with the data or a path, naming the file and the fix."""
