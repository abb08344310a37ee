"""podtune's laptop side: plans, rents, syncs, follows, stops and reports. Never imports torch."""

__version__ = "0.1.0"
