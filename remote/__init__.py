"""podtune's pod side: train, merge, push and guard the bill. Heavy imports happen inside functions."""
