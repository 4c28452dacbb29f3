"""pdbatch's offline Vertex AI batch prediction service.

``LocalStack`` runs the whole offline stack (local Cloud Storage + this emulator) for tests and
notebooks; ``VertexEmulator`` runs only the Vertex part (with the Gemini Developer API surface,
``GeminiApi``, on the same port); ``python -m pdbatch.emulator`` (or
``pdbatch emulator``) serves both until interrupted and prints the environment to export.
The emulator imports nothing from pdbatch's client side.
"""

from .gemini_api import GeminiApi
from .responder import OpenAIForwarder
from .server import VertexEmulator
from .service import BatchService, Timing
from .stack import LocalStack

__all__ = ["BatchService", "GeminiApi", "LocalStack", "OpenAIForwarder", "Timing",
           "VertexEmulator"]
