"""What the sidecar tells the kubelet and Prometheus: /livez, /readyz and /metrics, read from State.

May import: core.
"""
