"""Space DRA driver: a Kubernetes DRA driver whose device is a fresh namespace."""

__version__ = "0.1.0"
