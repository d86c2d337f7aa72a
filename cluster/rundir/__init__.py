"""The run directory: file names (layout), the metrics log, the report, its plots and tables."""

from .layout import RunDir, RunDirError, RunPaths, check_writable

__all__ = ["RunDir", "RunDirError", "RunPaths", "check_writable"]
