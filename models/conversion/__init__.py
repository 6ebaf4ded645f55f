"""Conversion of registry-shipped weights into the formats the backends run."""
