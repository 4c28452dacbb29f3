"""pdbatch's exceptions."""


class PdbatchError(Exception):
    """Base class of every error pdbatch raises on purpose."""


class InputError(PdbatchError, ValueError):
    """Bad arguments or bad rows, found before anything is uploaded or submitted."""


class JobError(PdbatchError):
    """A batch prediction job ended without results (FAILED, CANCELLED, EXPIRED or PAUSED).

    ``result`` holds the frame with every answer the run's jobs wrote before they ended (rows
    without one have a ``missing: ...`` status), when they could be read; ``kinds`` each of its
    rows' status kind (a number: 0 answered, 1 failed, 2 missing, 3 skipped, 4 invalid)."""

    def __init__(self, message: str, result=None, kinds=None):
        super().__init__(message)
        self.result, self.kinds = result, kinds


class ServiceError(PdbatchError):
    """The batch service could not be reached, or kept failing, for longer than pdbatch
    retries (``PDBATCH_RETRY_DEADLINE`` seconds, default 300); the jobs may still be
    running."""
