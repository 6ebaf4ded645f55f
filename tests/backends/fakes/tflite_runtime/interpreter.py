"""A stand-in for ``tflite_runtime.interpreter`` with a Coral attached, on a machine without one.

``load_delegate`` behaves as the real one does: OSError when libedgetpu cannot be loaded,
ValueError when the TPU fails to initialise, else a delegate. ``Interpreter`` is the real
ai-edge-litert interpreter running the model on the CPU, recording the delegates it was given.
"""

from __future__ import annotations

from ai_edge_litert.interpreter import Interpreter as _RealInterpreter


class FakeTpu:
    library_missing = False
    init_fails = False
    delegates: list["Delegate"] = []

    @classmethod
    def reset(cls) -> None:
        cls.library_missing = cls.init_fails = False
        cls.delegates = []


class Delegate:
    def __init__(self, library: str, options: dict) -> None:
        self.library, self.options = library, options


def load_delegate(library: str, options: dict | None = None) -> Delegate:
    if FakeTpu.library_missing:
        raise OSError(f"{library}: cannot open shared object file: No such file or directory")
    if FakeTpu.init_fails:
        raise ValueError(f"Failed to load delegate from {library}")
    delegate = Delegate(library, dict(options or {}))
    FakeTpu.delegates.append(delegate)
    return delegate


class Interpreter(_RealInterpreter):
    def __init__(self, model_path: str | None = None, num_threads: int | None = None,
                 experimental_delegates: list | None = None, **kwargs) -> None:
        self.delegates = experimental_delegates or []
        super().__init__(model_path=model_path, num_threads=num_threads or 1)
