"""The scene classifier (CodeProject.AI's Scene Classifier): an image in, a Places365 scene name out,
derived from an ImageNet classifier's probabilities (no Places365 model ships offline; see places.yaml)."""

from edgewatch.daemon.modules.scene.module import MODULE_ID, SceneModule

__all__ = ["MODULE_ID", "SceneModule"]
