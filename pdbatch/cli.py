"""The ``pdbatch`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["emulator"]:
        from .emulator.__main__ import main as emulator_main

        return emulator_main(args[1:])
    print("usage: pdbatch emulator [--help]\n\n"
          "  emulator   serve local Cloud Storage and the Vertex AI batch emulator",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
