"""Which output head a detector needs, and how to feed it, from its tensors' shapes alone.

:func:`recognise` reads only :class:`~edgewatch.models.tensor_info.TensorInfo` descriptions, so the
same rules hold for an ONNX export, its TFLite or EdgeTPU conversion and an RKNN build. It tries
every entry of :data:`RECOGNISERS` against the outputs' shapes and the class count; exactly one
must fit. Outputs are matched as a set (by shape, by dtype where shapes tie), never by position,
so a file that lists them in another order is still recognised.

Adding a layout is one entry here (its shapes test and input convention) plus its decoder in
:data:`edgewatch.models.runtime.heads.HEADS`. A recogniser sees the outputs in file order, so one
whose roles share a shape can still tell orderings apart by where the distinct shapes sit:
TFLite SSD (``TFLite_Detection_PostProcess``) lists boxes [1,N,4], classes [1,N], scores [1,N],
count [1] in TF1 exports but scores, boxes, count, classes in TF2 ones — the position of the
[1,N,4] tensor tells which. An EdgeTPU DFL-split layout ([1,N,64] + [1,N,C]) is a shapes test
like ``yolo_nas``'s.

What the shapes cannot show, the input convention (colour order, 0–1 or 0–255, ImageNet mean and
std), comes from each layout's family and can be overridden (``input_range=``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from edgewatch.models.manifest import InputSpec, Preprocessing
from edgewatch.models.runtime.layouts import STRIDES, STRIDES_P6, cells, grid
from edgewatch.models.tensor_info import TensorInfo

DEFAULT_SIZE = 640  # for an input whose height and width are dynamic
InputRange = Literal["0-1", "0-255", "imagenet", "-1-1"]
INPUT_RANGES: tuple[str, ...] = ("0-1", "0-255", "imagenet", "-1-1")  # -1-1: (x - 127.5) / 127.5, TF's SSDs
Color = Literal["rgb", "bgr"]
IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, in 0–255 pixel units
IMAGENET_STD = (58.395, 57.12, 57.375)


class LayoutError(ValueError):
    """The model's tensors fit no known layout (or not the one asked for); the message lists them."""


@dataclass(frozen=True)
class Convention:
    """How a family's exports expect their image: colour order, value range, letterbox padding."""

    color: Literal["rgb", "bgr"] = "rgb"
    input_range: InputRange = "0-1"
    pad_value: float = 114.0


@dataclass(frozen=True)
class Image:
    """The image input as recognised: name, (w, h), layout, dtype, its description."""

    name: str
    size: tuple[int, int]
    layout: Literal["nchw", "nhwc"]
    info: TensorInfo


# A recogniser's shapes test: (image input, outputs in file order, class count) → the number of
# class columns the outputs have (class count, or one more for a background column), or None.
Match = Callable[[Image, list[TensorInfo], int], "int | None"]


@dataclass(frozen=True)
class Recogniser:
    """One known layout: its shapes test, how to describe it, how its family feeds images."""

    kind: str                     # the HEADS key that decodes it
    expected: str                 # the shapes, for error messages ({c}, {c4}, {c5}, {a}, {n}, {n3}, {g})
    match: Match
    convention: Convention = field(default_factory=Convention)
    size_input: bool = False      # takes a second input, [1,2] = (w, h) the boxes are scaled to
    yields_to: str | None = None  # when the shapes fit this layout and that one too, that one is taken

    def describe(self, size: tuple[int, int], classes: int) -> str:
        n = cells(size)
        grids = "/".join("{}x{}".format(*grid(size, s)[::-1]) for s in STRIDES)
        return f"{self.kind}: " + self.expected.format(c=classes, c4=4 + classes, c5=5 + classes,
                                                        a=3 * (5 + classes), n=n, n3=3 * n, g=grids)


@dataclass(frozen=True)
class Layout:
    """A recognised detector: its head and how to feed it (see :meth:`input_spec`, :meth:`preprocessing`)."""

    kind: str
    input_name: str
    size: tuple[int, int]                 # (w, h)
    layout: Literal["nchw", "nhwc"]
    dtype: Literal["float32", "uint8", "int8"]
    color: Literal["rgb", "bgr"]
    input_range: InputRange
    classes: int                          # class columns of the outputs (labels + 1 with a background column)
    pad_value: float = 114.0
    size_input: str | None = None
    input_quantisation: tuple[float, int] | None = None  # an int8 input's (scale, zero point)
    also_fits: tuple[str, ...] = ()       # layouts the shapes fit too, that yielded to this one

    @property
    def mean_std(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """Per-channel mean and std in 0–255 pixel units, in the input's colour order."""
        if self.input_range == "imagenet":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
            return (mean, std) if self.color == "rgb" else (mean[::-1], std[::-1])
        if self.input_range == "-1-1":
            return (127.5,) * 3, (127.5,) * 3  # type: ignore[return-value]
        return (0.0, 0.0, 0.0), ((255.0,) * 3 if self.input_range == "0-1" else (1.0,) * 3)

    def input_spec(self) -> InputSpec:
        w, h = self.size
        return InputSpec(name=self.input_name, shape=(1, 3, h, w) if self.layout == "nchw" else (1, h, w, 3),
                         layout=self.layout, dtype=self.dtype, size_input=self.size_input)

    def preprocessing(self) -> Preprocessing:
        mean, std = self.mean_std
        if self.input_quantisation:  # q = real / scale + zero: fold both into mean and std (see letterbox)
            scale, zero = self.input_quantisation
            mean = tuple(m - zero * s * scale for m, s in zip(mean, std))  # type: ignore[assignment]
            std = tuple(s * scale for s in std)  # type: ignore[assignment]
        return Preprocessing(color=self.color, mean=mean, std=std, pad_value=self.pad_value)

    def summary(self) -> str:
        return (f"{self.kind}, input {self.input_name} {self.size[0]}x{self.size[1]} {self.layout} {self.dtype} "
                f"{self.color.upper()} {self.input_range}")


# -- shape tests ----------------------------------------------------------------------------------

def _fits(shape: tuple[int | None, ...], expected: tuple[int | None, ...]) -> bool:
    """Same rank, and each dimension equal where both are known (None: dynamic, or any)."""
    return len(shape) == len(expected) and all(d is None or e is None or d == e for d, e in zip(shape, expected))


def _grid_rows(size: tuple[int, int]) -> tuple[int, ...]:
    """Row counts of a one-row-per-cell export: strides 8/16/32, or P6's 8–64."""
    return tuple(cells(size, s) for s in (STRIDES, STRIDES_P6))


def _floats(outputs: list[TensorInfo]) -> bool:
    return all(o.dtype.startswith("float") or o.quantised for o in outputs)


def _single(outputs: list[TensorInfo], shapes: list[tuple[int | None, ...]], c: int) -> int | None:
    if len(outputs) != 1 or not _floats(outputs):
        return None
    return c if any(_fits(outputs[0].shape, shape) for shape in shapes) else None


# Rows in input pixels decode whatever their number (3 anchors per cell, one row per cell as
# YOLOv6's, P2/P6 strides); YOLOX's grid-relative rows need the grid, so their number must be its.
def _match_yolov5(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    return _single(outputs, [(1, None, 5 + c)], c)


def _match_yolov8(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    return _single(outputs, [(1, 4 + c, None)], c)


def _match_yolox(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    return _single(outputs, [(1, n, 5 + c) for n in _grid_rows(img.size)], c)


def _pair(outputs: list[TensorInfo], rows: int | None, columns: tuple[int, ...]) -> int | None:
    """Boxes [1,N,4] and per-class [1,N,C] (C one of ``columns``), in either order: C, or None."""
    if len(outputs) != 2 or not _floats(outputs):
        return None
    for boxes, classes in (outputs, outputs[::-1]):
        n = boxes.shape[1] if len(boxes.shape) == 3 else None
        if not _fits(boxes.shape, (1, rows, 4)) or len(classes.shape) != 3:
            continue
        for cols in columns:
            if _fits(classes.shape, (1, n, cols)):
                return cols
    return None


def _match_yolo_nas(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    return _pair(outputs, cells(img.size), (c,))


def _match_detr(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    # Queries (300 for RT-DETR and RF-DETR) are not one per grid cell: that is yolo_nas.
    if any(len(o.shape) == 3 and o.shape[1] in _grid_rows(img.size) for o in outputs):
        return None
    return _pair(outputs, None, (c, c + 1))


def _match_dfine(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    boxes = [o for o in outputs if len(o.shape) == 3 and _fits(o.shape, (1, None, 4))]
    flat = [o for o in outputs if len(o.shape) == 2 and _fits(o.shape, (1, None))]
    if len(outputs) != 3 or len(boxes) != 1 or len(flat) != 2:
        return None
    q = {boxes[0].shape[1], *(o.shape[1] for o in flat)} - {None}
    ints = [o for o in flat if o.dtype.startswith(("int", "uint")) and not o.quantised]
    return c if len(q) <= 1 and len(ints) == 1 else None  # labels are indices: any class count fits


def _per_stride(outputs: list[TensorInfo], img: Image, channels: Callable[[int], list[int]]) -> bool:
    """NCHW outputs, one group per stride 8/16/32 with the map size of that stride, each group's
    channel counts (as a multiset) one of ``channels(stride)``'s."""
    if not _floats(outputs) or any(len(o.shape) != 4 or o.shape[0] not in (1, None) for o in outputs):
        return False
    remaining = list(outputs)
    for stride in STRIDES:
        gw, gh = grid(img.size, stride)
        group = [o for o in remaining if _fits(o.shape[2:], (gh, gw))]
        want = sorted(channels(stride))
        if sorted(o.shape[1] or -1 for o in group) != want:
            return False
        remaining = [o for o in remaining if not any(o is g for g in group)]
    return not remaining


def _match_tflite_ssd(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    """TFLite_Detection_PostProcess: boxes [1,N,4], classes and scores [1,N], count [1], in any order
    (the decoder tells classes from scores by content). Class ids index the labels: any count fits."""
    if len(outputs) != 4 or not _floats(outputs):
        return None
    boxes = [o for o in outputs if len(o.shape) == 3 and _fits(o.shape, (1, None, 4))]
    rows = [o for o in outputs if len(o.shape) == 2 and _fits(o.shape, (1, None))]
    count = [o for o in outputs if len(o.shape) == 1 and _fits(o.shape, (1,))]
    if len(boxes) != 1 or len(rows) != 2 or len(count) != 1:
        return None
    return c if len({boxes[0].shape[1], *(r.shape[1] for r in rows)} - {None}) <= 1 else None


def _match_yolo_dfl_split(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    """YOLO's head split for the EdgeTPU: DFL boxes [1,N,64] and class logits [1,N,C] (either axis
    order), N one row per cell of strides 8/16/32; a third [1,N,1] output may come along. 64 classes
    cannot be told from the boxes."""
    if len(outputs) not in (2, 3) or c == 64 or not _floats(outputs) or any(len(o.shape) != 3 for o in outputs):
        return None
    w, h = img.size
    for n in {cells(img.size), sum((w // s) * (h // s) for s in STRIDES)}:
        widths = sorted(o.shape[2] if o.shape[1] == n else o.shape[1] if o.shape[2] == n else -1 for o in outputs)
        if widths in (sorted([64, c]), sorted([1, 64, c])):
            return c
    return None


def _match_rknn_yolov8(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    for per_stride in ([64, c, 1], [64, c]):
        if len(outputs) == 3 * len(per_stride) and _per_stride(outputs, img, lambda s: per_stride):
            return c
    return None


def _match_rknn_yolov5(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    return c if len(outputs) == 3 and _per_stride(outputs, img, lambda s: [3 * (5 + c)]) else None


def _match_rknn_yolox(img: Image, outputs: list[TensorInfo], c: int) -> int | None:
    return c if len(outputs) == 3 and _per_stride(outputs, img, lambda s: [5 + c]) else None


# The known layouts. Conventions follow each family's own demo code: Ultralytics and the zoo's
# YOLOv5/YOLOv8 take RGB scaled to 0–1 (the zoo's convert.py: std 255); YOLOX takes 0–255 unscaled
# (Megvii's demo feeds OpenCV's BGR; the zoo's demo converts to RGB first); RF-DETR normalises RGB
# with ImageNet's mean and std (RT-DETR's own deploy export is the dfine layout, 0–1).
RECOGNISERS: dict[str, Recogniser] = {r.kind: r for r in (
    Recogniser("yolov5", "1 output [1,N,{c5}] (N={n3} at 3 anchors per cell): Ultralytics YOLOv5, rows of "
               "cx,cy,w,h in pixels, objectness, {c} class scores (YOLOv6 too, N={n})", _match_yolov5),
    Recogniser("yolov8", "1 output [1,{c4},N] (N={n}): Ultralytics YOLOv8/YOLO11, cx,cy,w,h + {c} class scores "
               "per cell", _match_yolov8),
    Recogniser("yolox", "1 output [1,{n},{c5}]: YOLOX (decode_in_inference off), grid-relative x,y,log w,h, "
               "objectness, {c} class scores (shape shared with pixel rows: --kind yolox)", _match_yolox,
               Convention("bgr", "0-255"), yields_to="yolov5"),
    Recogniser("yolo_nas", "2 outputs [1,{n},4] boxes x1,y1,x2,y2 + [1,{n},{c}] class scores: YOLO-NAS",
               _match_yolo_nas),
    Recogniser("detr", "2 outputs [1,Q,4] boxes cx,cy,w,h (0-1) + [1,Q,{c}] class logits ({c}+1 with a "
               "background column): RF-DETR, RT-DETR without post-processing", _match_detr,
               Convention("rgb", "imagenet")),
    Recogniser("dfine", "3 outputs labels [1,Q] int, boxes [1,Q,4] x1,y1,x2,y2, scores [1,Q], and a second "
               "input orig_target_sizes [1,2]: D-FINE, DEIM, RT-DETR deploy", _match_dfine, size_input=True),
    Recogniser("rknn_yolov8", "9 outputs, per stride 8/16/32 (maps {g}) [1,64,H,W] DFL boxes, [1,{c},H,W] class "
               "scores, [1,1,H,W] score sum (6 without the sums): rknn_model_zoo YOLOv8/YOLO11",
               _match_rknn_yolov8),
    Recogniser("rknn_yolov5", "3 outputs [1,{a},H,W] at strides 8/16/32 (maps {g}): rknn_model_zoo YOLOv5, "
               "sigmoid applied, zoo anchors", _match_rknn_yolov5),
    Recogniser("rknn_yolox", "3 outputs [1,{c5},H,W] at strides 8/16/32 (maps {g}): rknn_model_zoo YOLOX",
               _match_rknn_yolox, Convention("rgb", "0-255")),
    Recogniser("tflite_ssd", "4 outputs boxes [1,N,4] (ymin,xmin,ymax,xmax 0-1), classes [1,N], scores [1,N], "
               "count [1]: TFLite_Detection_PostProcess (Coral's SSD MobileNet, TF Object Detection API, "
               "EfficientDet-Lite)", _match_tflite_ssd, Convention("rgb", "-1-1")),
    Recogniser("yolo_dfl_split", "2 outputs [1,{n},64] DFL boxes + [1,{n},{c}] class logits (or transposed): "
               "YOLOv8/9/11 for the EdgeTPU with its head split, as Frigate's yolo-generic", _match_yolo_dfl_split),
    Recogniser("yolov5_normalized", "1 output [1,N,{c5}] with cx,cy,w,h as fractions of the input: YOLOv5's "
               "TensorFlow, TF.js and TFLite exports (told from yolov5 by running it once)", _match_yolov5,
               yields_to="yolov5"),
    Recogniser("yolov8_normalized", "1 output [1,{c4},N] with cx,cy,w,h as fractions of the input: Ultralytics "
               "YOLOv8/YOLO11 TFLite and EdgeTPU exports (told from yolov8 by running it once)", _match_yolov8,
               yields_to="yolov8"),
)}


# -- recognition ----------------------------------------------------------------------------------

def _image_input(inputs: list[TensorInfo]) -> Image | None:
    for info in inputs:
        if len(info.shape) != 4 or info.shape[0] not in (1, None):
            continue
        if info.shape[1] == 3:
            h, w, layout = info.shape[2], info.shape[3], "nchw"
        elif info.shape[3] == 3:
            h, w, layout = info.shape[1], info.shape[2], "nhwc"
        else:
            continue
        return Image(info.name, (w or DEFAULT_SIZE, h or DEFAULT_SIZE), layout, info)  # type: ignore[arg-type]
    return None


def _size_input(info: TensorInfo) -> bool:
    return _fits(info.shape, (1, 2)) and info.dtype.startswith(("int", "uint", "float"))


def _listing(inputs: list[TensorInfo], outputs: list[TensorInfo], size: tuple[int, int], classes: int,
             kinds: list[str]) -> str:
    seen = "; ".join(map(str, inputs)) or "none"
    outs = "; ".join(map(str, outputs)) or "none"
    known = "\n".join(f"  {RECOGNISERS[k].describe(size, classes)}" for k in kinds)
    return (f"inputs: {seen}\noutputs: {outs}\n"
            f"known layouts (for {classes} classes, input {size[0]}x{size[1]}):\n{known}")


def recognise(inputs: list[TensorInfo], outputs: list[TensorInfo], num_classes: int, kind: str | None = None,
              input_range: InputRange | None = None, color: Color | None = None) -> Layout:
    """The one known layout the tensors fit for ``num_classes`` classes (``kind`` forces one, still
    checked against the shapes); ``input_range`` and ``color`` override the family's input convention.
    Raises LayoutError listing every known layout and what the model has."""
    if kind is not None and kind not in RECOGNISERS:
        raise LayoutError(f"unknown layout {kind!r}: use one of {', '.join(RECOGNISERS)}")
    if input_range is not None and input_range not in INPUT_RANGES:
        raise LayoutError(f"unknown input range {input_range!r}: use one of {', '.join(INPUT_RANGES)}")
    if color is not None and color not in ("rgb", "bgr"):
        raise LayoutError(f"unknown colour order {color!r}: use rgb or bgr")
    img = _image_input(inputs)
    if img is None:
        raise LayoutError("no image input (4-D, 3 channels first or last) among the model's inputs: "
                          f"{'; '.join(map(str, inputs)) or 'none'}. Export the detector with a fixed 1x3xHxW "
                          "(or 1xHxWx3) image input")
    dtype = img.info.dtype
    if dtype not in ("float32", "uint8", "int8"):
        raise LayoutError(f"image input {img.info} is {dtype}: export it with a float32 (or uint8) input")
    others = [i for i in inputs if i is not img.info]
    candidates = [kind] if kind else list(RECOGNISERS)
    fits: list[tuple[Recogniser, int]] = []
    for name in candidates:
        rec = RECOGNISERS[name]
        extra_ok = (len(others) == 1 and _size_input(others[0])) if rec.size_input else not others
        columns = rec.match(img, outputs, num_classes) if extra_ok else None
        if columns is not None:
            fits.append((rec, columns))
    taken = {r.kind for r, _ in fits}
    yielded = tuple(r.kind for r, _ in fits if r.yields_to in taken)
    fits = [(r, c) for r, c in fits if r.kind not in yielded]
    if len(fits) != 1:
        listing = _listing(inputs, outputs, img.size, num_classes, list(RECOGNISERS))
        if kind:
            why = f"the model's tensors do not fit layout {kind}"
        elif fits:
            why = f"the model's tensors fit several layouts ({', '.join(r.kind for r, _ in fits)}): name it with --kind"
        else:
            why = (f"the model's tensors fit no known layout for {num_classes} classes: check the labels file has "
                   "one class name per line, one for each class the model outputs, or export the model in one of "
                   "these layouts")
        raise LayoutError(f"{why}\n{listing}")
    rec, columns = fits[0]
    conv = rec.convention
    raw = dtype == "uint8"  # the model (or the device) normalises raw pixels itself
    quant = (float(img.info.scale), int(img.info.zero_point or 0)) if dtype == "int8" and img.info.quantised else None
    if dtype == "int8" and quant is None:
        raise LayoutError(f"image input {img.info} is int8 without a scale and zero point: export it with a float "
                          "input")
    return Layout(kind=rec.kind, input_name=img.name, size=img.size, layout=img.layout, dtype=dtype,  # type: ignore[arg-type]
                  color=color or conv.color, input_range="0-255" if raw else (input_range or conv.input_range),
                  classes=columns, pad_value=conv.pad_value,
                  size_input=others[0].name if rec.size_input else None, input_quantisation=quant,
                  also_fits=yielded)
