"""The one error type of the analysis: a problem the user can fix (wrong directory, no jobs)."""

from __future__ import annotations

# The one guarded import of the package: analysis also runs where only the job files and this
# package are installed, and then its errors derive from Exception.
try:  # share the project's user-facing base class when the library is installed alongside
    from sft_sweep.errors import SftSweepError as _Base
except Exception:  # noqa: BLE001 - analysis also runs on a machine with only the job files
    _Base = Exception


class ReportError(_Base):
    """Bad input to the analysis; entry points print the message (one line) and exit non-zero."""
