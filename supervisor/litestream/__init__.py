"""Litestream and the files it replicates: the binary, litestream.yml as Litestream reads it (with
its expansion and replica settings; the compaction and snapshot schedule each sidecar draws), the
child process and its supervisor, the control socket, the WAL guard, and the SQLite, WAL and LTX
formats read directly.

May import: core.
"""
