"""A trial's status names, shared by results (the records) and plots (which
colour by status) without either importing the other."""

__all__ = ["PENDING", "RUNNING", "PAUSED", "COMPLETED", "STOPPED", "FAILED", "STATUSES"]

PENDING, RUNNING, PAUSED, COMPLETED, STOPPED, FAILED = "pending", "running", "paused", "completed", "stopped", \
    "failed"
STATUSES = (PENDING, RUNNING, PAUSED, COMPLETED, STOPPED, FAILED)
