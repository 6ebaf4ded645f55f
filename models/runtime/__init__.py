"""What runs a model once it is installed: preprocessing, output heads, labels, and the one run
path (letterbox → backend → head). Installing, converting and quantising live in edgewatch.models."""
