"""COCO-80 class names, the legacy DeepStack spellings, and the ipcam preset class sets."""

from __future__ import annotations

COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

# DeepStack and the CodeProject.AI docs use these older (VOC-era) spellings.
LEGACY_ALIASES: dict[str, str] = {
    "motorcycle": "motorbike",
    "airplane": "aeroplane",
    "couch": "sofa",
    "potted plant": "pottedplant",
    "dining table": "diningtable",
    "tv": "tvmonitor",
}

LABEL_STYLES = ("coco", "legacy")


def display_label(label: str, style: str) -> str:
    """The name a client sees for ``label`` under the ``label_style`` setting."""
    if style == "legacy":
        return LEGACY_ALIASES.get(label, label)
    return label


# The CodeProject.AI custom-model presets NVR users pick, resolved to COCO classes.
# COCO has no deer, rabbit, raccoon, fox, skunk, squirrel or pig, nor a single "vehicle"
# class: vehicles come back as car, truck, bus, motorcycle or bicycle.
PRESETS: dict[str, frozenset[str]] = {
    "ipcam-general": frozenset({"person", "bicycle", "car", "motorcycle", "bus", "truck", "cat", "dog"}),
    "ipcam-dark": frozenset({"person", "bicycle", "car", "motorcycle", "bus", "cat", "dog"}),
    "ipcam-animal": frozenset({"bird", "cat", "dog", "horse", "sheep", "cow", "bear"}),
    "ipcam-combined": frozenset(
        {"person", "bicycle", "car", "motorcycle", "bus", "truck",
         "bird", "cat", "dog", "horse", "sheep", "cow", "bear"}
    ),
}
