"""``python -m analysis DIR [DIR ...] [--out OUT] [--status]``: same as ``sft-sweep-report``."""

from analysis.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
