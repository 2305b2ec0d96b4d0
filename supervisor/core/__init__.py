"""The core every layer stands on: settings (the only reader of the environment), errors and exit
codes, logs and redaction, budgets and backoff, signals, the shared State, the small HTTP server,
the workload's identity, memory at start-up.

Imports nothing else of the supervisor: everything above may import this.
"""
