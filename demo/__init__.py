"""The local demo: a pod's life on the test bed (see `make demo`)."""
