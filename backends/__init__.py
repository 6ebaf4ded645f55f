"""Inference runtimes behind one interface, found by probing the hardware."""
