"""A run's staging and output locations: a Cloud Storage folder or a BigQuery dataset.

Each location stages a job's request lines (``stage`` gives the job's ``input_config``), names
where a job writes (``destination`` gives its ``output_config``), reads a job's answers back
(``collect``) and removes what it staged (``clean_up``). Inputs and outputs may be of
different kinds: the service allows JSONL in with a table out, and a table in with JSONL out.
"""

from __future__ import annotations

import os
import tempfile

import pyarrow as pa

from .formats import lines
from .formats.lines import Parser
from .staging import bigquery, gcs


class GcsLocation:
    """``<staging>/<run id>/input-NNNNN.jsonl`` in (with ``pdbatch-run`` object metadata),
    ``.../output-NNNNN/`` out."""

    def __init__(self, root: str, run_id: str, parser: Parser):
        self.folder, self.run_id, self.parser = f"{root}/{run_id}", run_id, parser
        self.fs = gcs.filesystem()

    def __str__(self) -> str:
        return self.folder

    def stage(self, number: int, requests: pa.ChunkedArray) -> dict:
        uri = f"{self.folder}/input-{number:05d}.jsonl"
        gcs.write_jsonl(self.fs, uri, requests, metadata={"pdbatch-run": self.run_id})
        return {"instances_format": "jsonl", "gcs_source": {"uris": [uri]}}

    def destination(self, number: int) -> dict:
        return {"predictions_format": "jsonl",
                "gcs_destination": {"output_uri_prefix": f"{self.folder}/output-{number:05d}"}}

    def collect(self, con, number: int, output_dir: str, response: bool) -> pa.Table:
        """Download the job's output files to a temporary folder and parse them (none when
        the job ended before writing any)."""
        with tempfile.TemporaryDirectory(prefix="pdbatch-") as tmp:
            paths = []
            uris = gcs.output_files(self.fs, output_dir) if output_dir else []
            for count, uri in enumerate(uris):
                paths.append(os.path.join(tmp, f"{count:05d}.jsonl"))
                gcs.download(self.fs, uri, paths[-1])
            return lines.parse_output(con, self.parser, paths, response)

    def clean_up(self) -> None:
        """Remove the run's staged inputs, uploaded files and Dask shards (outputs stay)."""
        staged = [path for pattern in ("input-*.jsonl", "files/*", "shards/*.jsonl")
                  for path in self.fs.glob(f"{self.folder}/{pattern}")]
        if staged:
            self.fs.rm(staged)

    def written(self) -> list[tuple[int, str]]:
        """``(job number, output directory)`` of what the run's jobs wrote here."""
        found = []
        for folder in sorted(self.fs.glob(f"{self.folder}/output-*")):
            final = sorted(self.fs.glob(f"{folder}/prediction-model-*/predictions.jsonl"))
            where = final[-1].rsplit("/", 1)[0] if final else folder
            found.append((int(folder.rsplit("-", 1)[1]), "gs://" + where))
        return found


class BigQueryLocation:
    """``<dataset>.pdbatch_<run id>_input_NNNNN`` in, ``..._output_NNNNN`` out, labelled with
    the run."""

    def __init__(self, uri: str, run_id: str, parser: Parser, bq, labels: dict[str, str],
                 carried: list):
        project, dataset = bigquery.dataset_of(uri)
        self.prefix = f"{project}.{dataset}.pdbatch_{run_id.replace('-', '_')}"
        self.uri, self.bq, self.labels, self.carried = uri, bq, labels, carried
        self.parser = parser

    def __str__(self) -> str:
        return f"{self.uri} (tables {self.prefix.rsplit('.', 1)[1]}_*)"

    def stage(self, number: int, requests: pa.ChunkedArray) -> dict:
        table = f"{self.prefix}_input_{number:05d}"
        bigquery.load_requests(self.bq, table, requests, self.carried, self.labels)
        return {"instances_format": "bigquery", "bigquery_source": {"input_uri": f"bq://{table}"}}

    def destination(self, number: int) -> dict:
        return {"predictions_format": "bigquery",
                "bigquery_destination": {"output_uri": f"bq://{self.output_table(number)}"}}

    def output_table(self, number: int) -> str:
        return f"{self.prefix}_output_{number:05d}"

    def collect(self, con, number: int, output_dir: str, response: bool) -> pa.Table:
        """The job's output table, parsed (none when the job ended before writing it)."""
        from google.api_core.exceptions import NotFound

        table = self.output_table(number)
        try:
            if self.labels:  # a re-read (read_results) labels nothing, so writes nothing
                bigquery.label(self.bq, table, self.labels)
            answers = bigquery.read_answers(self.bq, table)
        except NotFound:
            return lines.empty_output(response)
        return lines.parse_rows(con, self.parser, answers, response)

    def clean_up(self) -> None:
        """Remove the run's input tables (output tables stay)."""
        for table in bigquery.tables(self.bq, self.uri, f"{self.prefix}_input_"):
            bigquery.delete(self.bq, table)

    def written(self) -> list[tuple[int, str]]:
        """``(job number, "")`` for each output table of the run."""
        prefix = self.output_table(0)[:-len("00000")]
        return [(int(table[len(prefix):]), "")
                for table in bigquery.tables(self.bq, self.uri, prefix)]
