"""pdbatch: Vertex AI batch prediction over every row of a DataFrame.

``import pdbatch`` registers the ``df.gemini`` accessor::

    out = df.gemini.batch_predict(prompt_col="prompt", model="gemini-2.5-flash",
                                  staging="gs://my-bucket/pdbatch")

Google's client libraries are imported only when a run starts, so importing stays fast.
"""

from . import accessor as _accessor  # noqa: F401  (registers df.gemini)
from .api import batch_predict, estimate, submit
from .costs import Estimate
from .embedding import embed, estimate_embed, submit_embed, vectors
from .errors import InputError, JobError, PdbatchError, ServiceError
from .recorded import answers, attach, read_results, runs
from .runs.handle import BatchRun, RunStatus
from .usage import Usage

__version__ = "0.1.0"
__all__ = ["BatchRun", "Estimate", "InputError", "JobError", "PdbatchError", "RunStatus",
           "ServiceError", "Usage", "answers", "attach", "batch_predict", "embed", "estimate",
           "estimate_embed", "read_results", "runs", "submit", "submit_embed", "vectors"]
