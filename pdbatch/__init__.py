"""pdbatch: Vertex AI batch prediction over every row of a DataFrame.

``import pdbatch`` registers the ``df.gemini`` accessor::

    out = df.gemini.batch_predict(prompt_col="prompt", model="gemini-2.5-flash",
                                  staging="gs://my-bucket/pdbatch")

Google's client libraries are imported only when a run starts, so importing stays fast.
"""

from . import accessor as _accessor  # noqa: F401  (registers df.gemini)
from .errors import InputError, JobError, PdbatchError
from .reread import read_results
from .run import batch_predict

__version__ = "0.1.0"
__all__ = ["InputError", "JobError", "PdbatchError", "batch_predict", "read_results"]
