"""The README demo: run batch_predict on a small frame against the offline stack.

Starts a local Cloud Storage server and pdbatch's Vertex AI batch emulator on 127.0.0.1, answers
every row through a real batch job, prints the joined result, and stops the services.
"""

from __future__ import annotations

import pandas as pd

import pdbatch  # noqa: F401  (registers df.gemini)
from pdbatch.emulator import LocalStack


def main() -> None:
    books = pd.DataFrame(
        {
            "title": ["Dune", "Emma", "Beloved", "Solaris", "Dune"],
            "author": ["Frank Herbert", "Jane Austen", "Toni Morrison", "Stanisław Lem",
                       "Frank Herbert"],
        },
        index=pd.Index([101, 102, 103, 104, 101], name="book_id"),  # note the duplicate label
    )
    with LocalStack() as stack:
        print("Offline stack up:", ", ".join(f"{k}={v}" for k, v in stack.env.items()), "\n")
        out = books.gemini.batch_predict(
            prompt="Write a two-sentence blurb for {title} by {author}.",
            model="gemini-2.5-flash",
            system_instruction="You are a bookseller.",
            generation_config={"temperature": 0.2, "max_output_tokens": 128},
        )
    with pd.option_context("display.width", 250, "display.max_colwidth", 80,
                           "display.max_columns", None):
        print(out[["title", "text", "finish_reason", "status", "output_tokens"]])
    print(f"\n{len(out)} rows in, {len(out)} rows out, "
          f"{(out['status'] == '').sum()} answered, job {out['job'].iloc[0]}")


if __name__ == "__main__":
    main()
