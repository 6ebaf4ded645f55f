"""Sound classification (CodeProject.AI's Sound Classifier): WAV in, an UrbanSound8K class and the
AudioSet label YAMNet heard out."""

from edgewatch.daemon.modules.sound.module import MODULE_ID, SoundModule

__all__ = ["MODULE_ID", "SoundModule"]
