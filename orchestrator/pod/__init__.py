"""Talking to a pod: the connection (SSH or this machine), syncing code and data, the pod's venv, the detached job
and its secrets, following its files as they grow, and fetching what a stopped pod left on its volume."""
