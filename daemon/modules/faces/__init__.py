"""Faces (CodeProject.AI's face API): detection, registration, recognition and matching, with a
crash-safe face store. Being built: the store is here; the endpoints come with the face models."""
