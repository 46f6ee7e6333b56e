"""The one base class of the errors a user can act on (torch-free).

Every module raises its own subclass (DatasetError, ArtifactError, CheckpointError, ...) with a message that names
the file or option at fault; the command line catches :class:`LmliqaError` alone, prints the message and exits 2.
Anything else that escapes is a bug and keeps its traceback."""


class LmliqaError(Exception):
    """A bad input, file, option or environment, explained in the message."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for quoting a library's
    error inside one of ours."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
