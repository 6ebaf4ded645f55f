"""What runs a model once it is installed: preprocessing, output heads, labels, the one run path
of a detector (letterbox → backend → head) and that of the face models (faces: detect, align,
embed). Installing, converting and quantising live in edgewatch.models."""
