"""What the emulated ``batchPredictionJobs`` service checks of a create body before it keeps a
job: field names, required fields, labels, the model, the input and output configs."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

from . import bigquery
from .families import TUNED_MODEL, camel, family_of
from .faults import FaultError, JobFaults
from .rest import ServiceError

_GCS_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")

#: The fields of a BatchPredictionJob (spec §1.3), input and output-only alike; output-only
#: fields in a create body are ignored, any other name is refused.
_JOB_FIELDS = frozenset({
    "name", "displayName", "model", "modelVersionId", "unmanagedContainerModel", "inputConfig",
    "instanceConfig", "modelParameters", "outputConfig", "dedicatedResources", "serviceAccount",
    "manualBatchTuningParameters", "generateExplanation", "explanationSpec", "outputInfo",
    "state", "error", "partialFailures", "resourcesConsumed", "completionStats", "createTime",
    "startTime", "endTime", "updateTime", "labels", "encryptionSpec", "disableContainerLogging",
    "satisfiesPzs", "satisfiesPzi"})
#: Fields whose values are the user's own maps or free JSON: their keys are not field names.
_OPAQUE = {"labels", "modelParameters"}


def _camel_keys(value, opaque: bool = False):
    """Field names in lowerCamelCase, as proto3 JSON reads ``display_name`` and
    ``displayName`` alike (user maps such as ``labels`` keep their keys)."""
    if isinstance(value, dict) and not opaque:
        return {camel(k): _camel_keys(v, camel(k) in _OPAQUE) for k, v in value.items()}
    if isinstance(value, list) and not opaque:
        return [_camel_keys(v) for v in value]
    return value


def _check_labels(labels, bad) -> None:
    """Label rules (spec §1.3): at most 64 labels; keys of 1-63 characters starting with a
    lowercase letter, values of at most 63; lowercase letters (international ones too),
    digits, ``_`` and ``-``."""
    def fits(text) -> bool:
        return isinstance(text, str) and len(text) <= 63 and all(
            c in "_-" or c.isdigit() or (c.isalpha() and c == c.lower()) for c in text)

    if not isinstance(labels, dict) or len(labels) > 64:
        raise bad("labels must be a map of at most 64 entries.")
    for key, value in labels.items():
        if not (fits(key) and key and key[0].isalpha()) or not fits(value):
            raise bad(f"Label {key!r}: {value!r} is invalid: keys start with a lowercase letter; "
                      "keys and values have at most 63 lowercase letters, digits, '_' or '-'.")


def _check_io(source: dict, destination: dict) -> None:
    """The input and output configs name a supported format and well-formed URIs."""
    if source.get("instancesFormat") == "jsonl":
        uris = list((source.get("gcsSource") or {}).get("uris") or [])
        if not uris:
            raise ValueError("inputConfig.gcsSource.uris is required for 'jsonl' input.")
    elif source.get("instancesFormat") == "bigquery":
        uris = []
        if bigquery.parse_uri((source.get("bigquerySource") or {}).get("inputUri"))[2] is None:
            raise ValueError("inputConfig.bigquerySource.inputUri must name a table: "
                             "bq://project.dataset.table.")
    else:
        raise ValueError("inputConfig.instancesFormat must be 'jsonl' (with gcsSource.uris) or "
                         "'bigquery' (with bigquerySource.inputUri).")
    if destination.get("predictionsFormat") == "jsonl":
        uris.append((destination.get("gcsDestination") or {}).get("outputUriPrefix", ""))
    elif destination.get("predictionsFormat") == "bigquery":
        bigquery.parse_uri((destination.get("bigqueryDestination") or {}).get("outputUri"))
    else:
        raise ValueError("outputConfig.predictionsFormat must be 'jsonl' (with "
                         "gcsDestination.outputUriPrefix) or 'bigquery' (with "
                         "bigqueryDestination.outputUri).")
    for uri in uris:
        if not _GCS_URI.match(uri):
            raise ValueError(f"Invalid Cloud Storage URI: {uri}")


class CreateValidation:
    """``BatchService``'s check of a create body (``_validated``): a mixin reading the
    service's served ``models``, its ``tuned_model`` lookup and its ``_faults``."""

    models: set[str]
    tuned_model: Callable[[str], dict]
    _faults: Callable[..., JobFaults]

    def _validated(self, body: dict) -> dict:
        def bad(message: str) -> ServiceError:
            return ServiceError(400, "INVALID_ARGUMENT", message)

        if not isinstance(body, dict):
            raise bad("The request body must be a BatchPredictionJob object.")
        body = _camel_keys(body)  # proto3 JSON takes either spelling of a field name
        unknown = sorted(set(body) - _JOB_FIELDS)
        if unknown:
            raise bad(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                      "'batch_prediction_job': Cannot find field.")
        for required in ("displayName", "model", "inputConfig", "outputConfig"):
            if not body.get(required):
                raise bad(f"Required field is not set: {required}.")
        if not isinstance(body["displayName"], str) or len(body["displayName"]) > 128:
            raise bad("The display name must be a string of at most 128 characters.")
        _check_labels(body.get("labels") or {}, bad)
        model = body["model"]
        if isinstance(model, str) and TUNED_MODEL.fullmatch(model):
            self.tuned_model(model)  # 404 when there is no such model
        elif not isinstance(model, str) or family_of(model) is None \
                or model.rsplit("/", 1)[-1].split("@")[0] not in self.models:
            raise bad(f"Do not support publisher model {str(model).rsplit('/', 1)[-1]}")
        try:
            if self._faults(body.get("labels")).blocked and \
                    family_of(model).name != "gemini":
                raise FaultError("emulator-safety applies to Gemini models only.")
            _check_io(body["inputConfig"], body["outputConfig"])
            if family_of(model).name == "gemini-embedding" and "bigquery" in (
                    body["inputConfig"].get("instancesFormat"),
                    body["outputConfig"].get("predictionsFormat")):
                raise ValueError("BigQuery tables are not supported for Gemini embedding "
                                 "models: use JSONL files in Cloud Storage.")
        except (FaultError, ValueError) as exc:
            raise bad(str(exc)) from None
        allowed = {
            "displayName", "model", "inputConfig", "outputConfig", "labels",
            "modelParameters", "encryptionSpec", "serviceAccount", "instanceConfig",
        }
        return {k: copy.deepcopy(v) for k, v in body.items() if k in allowed}
