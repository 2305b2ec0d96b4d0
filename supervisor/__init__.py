"""litestream-supervisor: Litestream with short-lived S3 credentials from a Kubernetes token."""

__version__ = "0.1.0"
