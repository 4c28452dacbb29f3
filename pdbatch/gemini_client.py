"""google-genai's ``Client`` for the Gemini Developer API (``service="gemini-api"``), shared by
its batch service (``service.gemini_api``) and its Files API staging (``storage.files_api``).

google-genai is imported only when a Developer API run starts. The API key is never sent over
plain HTTP: a local (``http://``) base URL, such as ``pdbatch emulator``'s, gets a placeholder
key instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, TypeVar

from .config import retry_deadline

if TYPE_CHECKING:
    from google import genai

log = logging.getLogger(__name__)

#: The key sent to a plain-HTTP base URL instead of the user's.
PLACEHOLDER_KEY = "pdbatch-local"
#: Backoff between attempts: the first wait, its growth and its cap, in seconds.
_FIRST_WAIT, _GROWTH, _LONGEST_WAIT = 1.0, 2.0, 30.0
T = TypeVar("T")


def attempts_within(deadline: float) -> int:
    """How many attempts google-genai makes so that its waits between them (1 s, doubling,
    at most 30 s) add up to ``deadline`` seconds: it counts attempts, not time."""
    attempts, waited, wait = 1, 0.0, _FIRST_WAIT
    while waited < deadline:
        waited += wait
        wait = min(wait * _GROWTH, _LONGEST_WAIT)
        attempts += 1
    return attempts


def client(base_url: str, api_key: str, retry: bool = True) -> genai.Client:
    """A google-genai client of the Developer API at ``base_url``. ``retry``: transient
    failures (408, 429, 5xx, no answer) are tried again, with backoff, for
    ``PDBATCH_RETRY_DEADLINE`` seconds (300 s), as on Vertex AI; off for calls that must not
    happen twice (creating a batch)."""
    return _client(base_url, api_key, attempts_within(retry_deadline()) if retry else 1)


@cache
def _client(base_url: str, api_key: str, attempts: int) -> genai.Client:
    from google import genai
    from google.genai import types

    api_key = _sent_key(base_url, api_key)
    options = types.HttpOptions(base_url=base_url, api_version="v1beta", retry_options=(
        types.HttpRetryOptions(attempts=attempts, initial_delay=_FIRST_WAIT,
                               exp_base=_GROWTH, max_delay=_LONGEST_WAIT)))
    return genai.Client(api_key=api_key, http_options=options)


def every(pager: Iterable[T]) -> list[T]:
    """Every item of a google-genai list pager, page by page. The pager itself fails
    (IndexError) on an empty page before the last, which a list that shrinks while it is read
    gives (files deleted meanwhile); here an empty page ends the list."""
    items = list(pager.page)
    while pager.page and pager.config.get("page_token"):
        items += pager.next_page()
    return items


def _sent_key(base_url: str, api_key: str) -> str:
    """The key to send to ``base_url``: a placeholder over plain HTTP."""
    if base_url.startswith("http://"):
        log.info("%s is plain HTTP: a placeholder API key is sent there, not yours", base_url)
        return PLACEHOLDER_KEY
    return api_key


def download(base_url: str, api_key: str, name: str, path: str) -> None:
    """Stream generated file ``name`` (``files/...``) to the local ``path``, a chunk at a time
    (google-genai's ``files.download`` holds a whole file in memory: a large job's results are
    hundreds of megabytes), trying transient failures again as ``client`` does."""
    import httpx

    url = client(base_url, api_key).files.get(name=name).download_uri
    headers = {"x-goog-api-key": _sent_key(base_url, api_key)}
    delay, attempts = _FIRST_WAIT, attempts_within(retry_deadline())
    for attempt in range(attempts):
        try:
            with httpx.stream("GET", url, headers=headers, timeout=60.0,
                              follow_redirects=True) as answer:
                answer.raise_for_status()
                with open(path, "wb") as out:
                    for chunk in answer.iter_bytes(1 << 20):
                        out.write(chunk)
            return
        except (httpx.TransportError, httpx.HTTPStatusError) as err:
            if not transient(err) or attempt == attempts - 1:
                raise
            log.warning("downloading %s failed (%s); trying again in %.0f s", name, err, delay)
            time.sleep(delay)
            delay = min(delay * _GROWTH, _LONGEST_WAIT)


def transient(err: Exception) -> bool:
    """Whether a failed call may succeed if tried again (a 408, 429 or 5xx answer, or no
    answer at all)."""
    import httpx
    from google.genai import errors

    if isinstance(err, httpx.UnsupportedProtocol):  # a URL without http(s)://: not transient
        return False
    code = (err.code if isinstance(err, errors.APIError) else err.response.status_code
            if isinstance(err, httpx.HTTPStatusError) else None)
    if code is not None:
        return code in (408, 429) or code >= 500
    return isinstance(err, (httpx.TransportError, ConnectionError, TimeoutError))
