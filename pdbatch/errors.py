"""pdbatch's exceptions."""


class PdbatchError(Exception):
    """Base class of every error pdbatch raises on purpose."""


class InputError(PdbatchError, ValueError):
    """Bad arguments or bad rows, found before anything is uploaded or submitted."""


class JobError(PdbatchError):
    """A batch prediction job ended without results (FAILED, CANCELLED, EXPIRED or PAUSED)."""
