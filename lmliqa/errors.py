"""Every error a user can act on, in one module (torch-free): one base class, :class:`LmliqaError`, and one subclass
per kind of fault, each raised with a message that names the file, option or input at fault and what to do next.

The command line catches :class:`LmliqaError` alone, prints the message and exits 2 (``lmliqa release`` exits 1 on
:class:`ReleaseFailed`, a gate that failed). Anything else that escapes is a bug and keeps its traceback. Modules
re-export the classes their callers know them by (``lmliqa.runtimes.ArtifactError``, ``lmliqa.data.DatasetError``).
"""


class LmliqaError(Exception):
    """A bad input, file, option or environment, explained in the message."""


# ------------------------------------------------------------------------------------- options and configuration
class ConfigError(LmliqaError, ValueError):
    """A training or command option that cannot be used as given."""


class PresetError(LmliqaError, KeyError):
    """An unknown preset or backbone (lmliqa.presets)."""

    def __str__(self) -> str:          # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TargetError(LmliqaError, ValueError):
    """An unknown target, a stage a target lacks, or an option for a target that was not chosen."""


class ScopeError(LmliqaError, ValueError):
    """A float scope names something unknown or something this network does not have."""


# ------------------------------------------------------------------------------------------------- input data
class DatasetError(LmliqaError, RuntimeError):
    """A dataset cannot be read as asked; the message names the file or field at fault."""


class ContractError(LmliqaError, ValueError):
    """A preprocessing contract field is invalid, or an image cannot satisfy the contract."""


# what went wrong with one input image (lmliqa score's error_kind column)
DECODE_KINDS = ("missing", "unreadable", "empty", "not_an_image", "unsupported", "truncated", "corrupt", "too_large")


class ImageDecodeError(LmliqaError, ValueError):
    """An input could not be turned into an RGB image. ``kind`` is one of DECODE_KINDS, ``reason`` says why in words,
    ``name`` names the input; str() is "name: reason"."""

    def __init__(self, name: str, reason: str, kind: str = "corrupt") -> None:
        assert kind in DECODE_KINDS, kind
        super().__init__(f"{name}: {reason}")
        self.name, self.reason, self.kind = name, reason, kind


# ------------------------------------------------------------------------------------- weights and checkpoints
class WeightsError(LmliqaError, RuntimeError):
    """Pretrained weights are missing, corrupt or do not fit the model."""


class CheckpointError(LmliqaError, RuntimeError):
    """A file is not an lmliqa checkpoint, or does not fit the model it describes."""


class ResumeError(LmliqaError, RuntimeError):
    """An interrupted job cannot be continued as asked (a training state saved with other options or split, a foreign
    state file, a score output written by another model); the message says why."""


class OutputError(LmliqaError, ValueError):
    """An output path that must not be written (e.g. an image's name: `--json photo.jpg` would overwrite it)."""


# ---------------------------------------------------------------------------------------------------- artifacts
class ArtifactError(LmliqaError, ValueError):
    """A file is not an lmliqa artifact this backend can read."""


class BackendUnavailable(LmliqaError, RuntimeError):
    """The backend cannot run here (package missing, wrong platform, no GPU); the message says which."""


class PlatformError(BackendUnavailable):
    """A platform that is unknown, not set up here (no emulator, no sysroot), or that lacks the artifact's runtime;
    or its worker process failed. The message says which and how to set it up."""


class PrecisionUnsupported(BackendUnavailable):
    """The backend runs here, but not in the precision asked for (it would silently run another one)."""


class DeviceUnavailable(BackendUnavailable):
    """The device asked for is not present (or not known to this backend); the message lists those that are."""


class ExportError(LmliqaError, RuntimeError):
    """An export or quantization step failed; the message says which and why."""


class ReleaseError(LmliqaError, ValueError):
    """A release folder whose manifest is missing or unreadable, or whose files do not match it; or inputs that
    cannot make an honest release."""


class ReleaseFailed(LmliqaError):
    """A gate failed: the release was not written (the evidence was)."""

    def __init__(self, failures: list[str], evidence) -> None:
        super().__init__(f"release not written: {len(failures)} gate(s) failed: " + "; ".join(failures)
                         + f" (evidence kept in {evidence})")
        self.failures = failures
        self.evidence = evidence


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for quoting a library's
    error inside one of ours."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
