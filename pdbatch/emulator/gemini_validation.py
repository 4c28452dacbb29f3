"""What the Gemini Developer API's batch mode checks of a ``batchGenerateContent`` body before it
keeps a batch: field names, the display name (and the ``emulator-*`` faults it carries), and an
input of exactly one kind (an uploaded file, or inline requests)."""

from __future__ import annotations

import re
from pathlib import Path

from . import filerefs
from .families import camel
from .faults import FaultError, JobFaults
from .gemini_files import FileStore, missing_file
from .rest import ServiceError, invalid_argument

#: GenerateContentBatch's fields (https://ai.google.dev/api/batch-api); output-only ones in a
#: create body are ignored, others refused.
_BATCH_FIELDS = frozenset({"model", "name", "displayName", "inputConfig", "output",
                           "createTime", "endTime", "updateTime", "batchStats", "state",
                           "priority", "webhookConfig"})
_FAULT = re.compile(r"(emulator-[a-z]+(?:-[a-z]+)*)=([A-Za-z0-9_-]+)")


class BatchValidation:
    """``GeminiBatches``' check of a create body (``_validated``): a mixin reading the batches'
    ``files`` and whether a create must name itself (``require_display_name``)."""

    files: FileStore
    require_display_name: bool

    def _validated(self, body: dict) -> tuple[dict, dict]:
        """The new record from a create body, and the batch's own fault labels."""
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise invalid_argument("Required field batch is not set.")
        batch = {camel(k): v for k, v in batch.items()}
        unknown = sorted(set(batch) - _BATCH_FIELDS)
        if unknown:
            raise invalid_argument(f'Invalid JSON payload received. Unknown name "{unknown[0]}" '
                                   "at 'batch': Cannot find field.")
        display = batch.get("displayName")
        if display is not None and not isinstance(display, str):
            raise invalid_argument("batch.display_name must be a string.")
        if not display and self.require_display_name:  # the reference's reading
            raise invalid_argument("batch.display_name is required.")
        own = dict(_FAULT.findall(display or ""))
        try:
            JobFaults.from_labels(own)
        except FaultError as exc:
            raise invalid_argument(str(exc)) from None
        config = {camel(k): v for k, v in (batch.get("inputConfig") or {}).items()} \
            if isinstance(batch.get("inputConfig"), dict) else {}
        record: dict = {"displayName": display} if display else {}
        if batch.get("priority") not in (None, 0, "0"):
            record["priority"] = str(int(batch["priority"]))
        if bool(config.get("fileName")) == bool(config.get("requests")):
            raise invalid_argument("batch.input_config needs exactly one of file_name and "
                                   "requests.")
        if config.get("fileName"):
            name = str(config["fileName"])
            if not self.files.exists(name):
                raise missing_file(name.removeprefix("files/"))
            if self.files.state(name) == "PROCESSING":
                raise ServiceError(400, "FAILED_PRECONDITION", filerefs.not_active(name))
            total = _count_lines(self.files.path(name))
            if not total:
                raise invalid_argument(f"The input file {name} has no requests.")
            record.update(inputConfig={"fileName": name}, _total=total)
        else:
            requests = (config["requests"] or {}).get("requests") \
                if isinstance(config["requests"], dict) else None
            if not isinstance(requests, list) or not requests or not all(
                    isinstance(r, dict) and isinstance(r.get("request"), dict)
                    for r in requests):
                raise invalid_argument("batch.input_config.requests.requests must be a "
                                       "non-empty list of {request, metadata} objects.")
            record.update(_requests=requests, _total=len(requests))
        return record, own


def _count_lines(path: Path) -> int:
    with path.open("rb") as source:
        return sum(1 for line in source if line.strip())
