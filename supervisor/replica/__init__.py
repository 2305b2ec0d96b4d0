"""The replica in the bucket: its layout and positions, lag, the lease (object, protocol, holder),
what is on disk beside it, restoring it (fail closed), and verifying it by content (drills).

May import: core, litestream, identity.
"""
