"""The command line: one module per command, each its options and the call into its run.

Machinery is imported inside each command when it runs (start-up time is a pod's start time).
May import: every package; nothing imports this but the entry point (supervisor/__main__.py).
"""
