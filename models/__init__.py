"""Model catalogue, on-disk store, pre/post-processing and conversion."""
