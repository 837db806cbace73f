"""``python -m lossland`` (and ``torchrun -m lossland``) run the command-line tool."""

from lossland.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
