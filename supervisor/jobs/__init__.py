"""What a long command does once its options are parsed: the sidecar's life (`replicate`: start,
keep credentials and the lease, drills, shutdown with the final upload) and `check`'s diagnosis.

May import: core, litestream, identity, replica, health.
"""
