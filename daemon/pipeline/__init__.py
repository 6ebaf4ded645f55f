"""Per-camera processing: frame → motion gate → detection → filters/zones → tracked object events."""
