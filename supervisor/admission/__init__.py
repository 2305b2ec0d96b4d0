"""Delivery into pods: the injection (`inject` and the webhook share it), the workload a pod belongs
to from its owner, service-mesh awareness, and the checks a pod must pass to be injected.

May import: core.
"""
