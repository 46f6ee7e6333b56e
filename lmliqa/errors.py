"""The one base class of the errors a user can act on (torch-free).

Every module raises its own subclass (DatasetError, ArtifactError, CheckpointError, ...) with a message that names
the file or option at fault; the command line catches :class:`LmliqaError` alone, prints the message and exits 2.
Anything else that escapes is a bug and keeps its traceback."""


class LmliqaError(Exception):
    """A bad input, file, option or environment, explained in the message."""
