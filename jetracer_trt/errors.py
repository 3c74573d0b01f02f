"""The one exception type the CLI turns into a clear one-line message and a non-zero exit."""


class JetracerError(Exception):
    """A user-facing error: bad input, a missing file, an unwritable directory.

    The message must say what was wrong and, where possible, what to do about it; the CLI prints it as
    ``error: <message>`` without a traceback.
    """
