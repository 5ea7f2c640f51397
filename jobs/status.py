"""Job states and which of them are final."""

QUEUED = "queued"
WAITING = "waiting"  # queued for a GPU slot
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
INTERRUPTED = "interrupted"  # its worker died with the consumer (kill -9, power loss)

ACTIVE = (QUEUED, WAITING, RUNNING)
FINAL = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
