"""Text generation with a small GGUF language model on the CPU (llama.cpp through xllamacpp).

:class:`Generator` loads one installed ``text_generation`` model (catalogue ``llm.yaml``) and serves
blocking and streamed completions, chat (with the model's own chat template from the GGUF), and two
prompted helpers for the task API: :meth:`Generator.summarise` and :meth:`Generator.answer`.

xllamacpp embeds llama.cpp's server engine. That engine also opens an HTTP listener; here it listens
on a Unix socket in a private (0700) temporary folder with a random API key, so nothing else on the
box can reach it, and it is only used in-process (``handle_completions``) plus, for chat templates,
``/apply-template`` over that socket. One lock per model serialises requests: one KV cache and one
slot, so a request runs with all the cores, and its output does not depend on what else is running.

Determinism: ``temperature=0`` is greedy decoding (same prompt, same text, on the same machine and
build); with ``temperature>0`` pass ``seed`` for a repeatable sample.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgewatch.models.manifest import ModelManifest

FinishReason = Literal["stop", "length", "cancelled"]
DEFAULT_CONTEXT = 2048
PLAIN_STOP = ("\nUser:", "\nuser:")  # a model without a chat template starts the next turn itself


class GenerationError(RuntimeError):
    """The runtime refused or failed a request (prompt longer than the context, bad parameter)."""


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: FinishReason
    prompt_ms: float = 0.0       # llama.cpp's own timings: prompt processing
    generation_ms: float = 0.0   # and token generation

    @property
    def tokens_per_second(self) -> float:
        """Generation speed (completion tokens per second of generation)."""
        return self.completion_tokens / (self.generation_ms / 1000) if self.generation_ms > 0 else 0.0

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_tokens / (self.prompt_ms / 1000) if self.prompt_ms > 0 else 0.0


@dataclass(frozen=True)
class Sampling:
    """Validated sampling parameters (the task API's text-generation body maps onto these)."""

    max_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0               # 0: all tokens
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    min_tokens: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problems = []
        if self.max_tokens < 1:
            problems.append("max_tokens must be at least 1")
        if not 0 <= self.min_tokens <= self.max_tokens:
            problems.append("min_tokens must be between 0 and max_tokens")
        if self.temperature < 0:
            problems.append("temperature must be >= 0")
        if self.top_k < 0:
            problems.append("top_k must be >= 0 (0: all tokens)")
        if not 0 < self.top_p <= 1:
            problems.append("top_p must be in (0, 1]")
        if self.repetition_penalty <= 0:
            problems.append("repetition_penalty must be > 0")
        if self.seed is not None and not 0 <= self.seed < 2**32 - 1:
            problems.append("seed must be in [0, 2^32-2]")
        if problems:
            raise ValueError("; ".join(problems))

    def request(self, prompt: str, max_tokens: int, *, ignore_eos: bool = False, seed_offset: int = 0) -> dict:
        body: dict[str, Any] = {
            "prompt": prompt, "max_tokens": max_tokens, "temperature": self.temperature,
            "top_k": self.top_k, "top_p": self.top_p, "min_p": 0.0, "repeat_penalty": self.repetition_penalty,
            "stream": True, "cache_prompt": True, "ignore_eos": ignore_eos}
        if self.temperature == 0:
            body["top_k"] = 1  # greedy, whatever else was asked
        if self.seed is not None:
            body["seed"] = (self.seed + seed_offset) % (2**32 - 1)
        if self.stop and not ignore_eos:  # the first min_tokens tokens are not stopped by a stop string either
            body["stop"] = list(self.stop)
        return body


@dataclass
class _Run:
    pieces: queue.Queue = field(default_factory=queue.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    result: Generation | None = None
    error: BaseException | None = None


_DONE = object()


class TextStream:
    """An iterator of text pieces as they are generated. ``close()`` (or leaving a ``with`` block, or
    the ``cancel`` event given to :meth:`Generator.stream` being set) stops generation within a token;
    :attr:`result` holds the :class:`Generation` once the iterator is exhausted."""

    def __init__(self, run: _Run, thread: threading.Thread) -> None:
        self._run = run
        self._thread = thread

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        item = self._run.pieces.get()
        if item is _DONE:
            self._run.pieces.put(_DONE)  # stay exhausted
            self._thread.join()
            if self._run.error is not None:
                raise self._run.error
            raise StopIteration
        return item

    def close(self) -> None:
        self._run.cancel.set()
        self._thread.join()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def result(self) -> Generation | None:
        return self._run.result


def gguf_metadata(path: Path, keys: Sequence[str] | None = None) -> dict[str, Any]:
    """The GGUF header's key/value metadata (arrays other than short ones skipped), read without
    llama.cpp: ``general.architecture``, ``<arch>.context_length``, ``tokenizer.chat_template``…"""
    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    with open(path, "rb") as fh:
        def read(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = fh.read(size)
            if len(data) != size:
                raise ValueError(f"{path.name}: truncated GGUF header")
            return struct.unpack(fmt, data)[0]

        def read_str() -> str:
            return fh.read(read("<Q")).decode("utf-8", "replace")

        def value(kind: int) -> Any:
            if kind in scalar:
                return read(scalar[kind])
            if kind == 8:
                return read_str()
            if kind == 9:
                item, count = read("<I"), read("<Q")
                if item in scalar and count > 64:  # token scores and types: skip
                    fh.seek(struct.calcsize(scalar[item]) * count, os.SEEK_CUR)
                    return None
                items = [value(item) for _ in range(count)]
                return items if count <= 64 else None
            raise ValueError(f"{path.name}: unknown GGUF value type {kind}")

        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path.name} is not a GGUF file")
        version = read("<I")
        if version < 2:
            raise ValueError(f"{path.name}: GGUF version {version} is too old")
        read("<Q")  # tensor count
        meta: dict[str, Any] = {"gguf.version": version}
        for _ in range(read("<Q")):
            key = read_str()
            val = value(read("<I"))
            if keys is None or key in keys:
                meta[key] = val
        return meta


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Generator:
    """One GGUF model loaded on the CPU. Thread-safe: requests are served one at a time."""

    def __init__(self, manifest: ModelManifest, path: Path, *, threads: int | None = None,
                 context: int | None = None) -> None:
        try:
            import xllamacpp
        except ImportError as exc:  # pragma: no cover - a dependency on Linux x86_64/aarch64
            raise GenerationError("text generation needs xllamacpp: pip install xllamacpp") from exc
        self.manifest = manifest
        self.path = Path(path)
        meta = gguf_metadata(self.path)
        arch = meta.get("general.architecture", "")
        self.architecture: str = arch
        self.chat_template: str | None = meta.get("tokenizer.chat_template") or None
        trained = int(meta.get(f"{arch}.context_length") or DEFAULT_CONTEXT)
        self.context = min(context or manifest.input.shape[2] or DEFAULT_CONTEXT, trained)
        self.threads = threads or cpu_threads()
        self._lock = threading.Lock()
        self._socket_dir = tempfile.mkdtemp(prefix="edgewatch-llm-")  # 0700
        self._key = secrets.token_hex(16)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = self.context
        params.n_batch = 512
        params.n_ubatch = 512
        params.n_parallel = 1
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.n_gpu_layers = 0
        params.hostnames = [os.path.join(self._socket_dir, "llm.sock")]
        params.api_keys = [self._key]
        params.ui = False
        params.endpoint_slots = False
        params.endpoint_props = False
        params.endpoint_metrics = False
        params.verbosity = 0
        params.warmup = False
        began = time.perf_counter()
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            raise GenerationError(f"{manifest.name}: llama.cpp could not load {self.path.name}: {exc}") from exc
        self.load_seconds = time.perf_counter() - began

    @classmethod
    def from_store(cls, store: Any, name: str, **kwargs: Any) -> Generator:
        """The installed model ``name`` of a models.store.ModelStore."""
        manifest = store.get(name)
        if manifest.task != "text_generation":
            raise GenerationError(f"{name} is a {manifest.task} model, not a text_generation model")
        return cls(manifest, store.path(manifest), **kwargs)

    def close(self) -> None:
        with self._lock:
            server = self.__dict__.pop("_server", None)
            del server
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ completions

    def generate(self, prompt: str, *, max_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0, min_tokens: int = 0,
                 seed: int | None = None, stop: Sequence[str] | None = None,
                 cancel: threading.Event | None = None) -> Generation:
        """Complete ``prompt`` (raw text: no chat template); blocks until done, or ``cancel`` is set."""
        sampling = Sampling(max_tokens, temperature, top_k, top_p, repetition_penalty, min_tokens, seed,
                            tuple(stop or ()))
        run = _Run(cancel=cancel or threading.Event())
        pieces: list[str] = []
        self._run(prompt, sampling, run, pieces.append)
        if run.error is not None:
            raise run.error
        assert run.result is not None
        return run.result

    def stream(self, prompt: str, *, max_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
               top_p: float = 1.0, repetition_penalty: float = 1.0, min_tokens: int = 0,
               seed: int | None = None, stop: Sequence[str] | None = None,
               cancel: threading.Event | None = None) -> TextStream:
        """Like :meth:`generate`, as a :class:`TextStream` of text pieces (for server-sent events).
        Generation runs in a thread; close the stream (or set ``cancel``) when the client goes away."""
        sampling = Sampling(max_tokens, temperature, top_k, top_p, repetition_penalty, min_tokens, seed,
                            tuple(stop or ()))
        run = _Run(cancel=cancel or threading.Event())

        def work() -> None:
            try:
                self._run(prompt, sampling, run, run.pieces.put)
            finally:
                run.pieces.put(_DONE)

        thread = threading.Thread(target=work, name=f"llm-{self.manifest.name}", daemon=True)
        thread.start()
        return TextStream(run, thread)

    def _run(self, prompt: str, sampling: Sampling, run: _Run, emit: Any) -> None:
        """Generate under the model's lock, calling ``emit`` with each piece; sets run.result or run.error.

        ``min_tokens``: the first ``min_tokens`` tokens are generated with end-of-generation tokens
        banned (as transformers' min_length does), then generation goes on from prompt + that text.
        """
        began = time.perf_counter()
        text: list[str] = []
        totals = {"prompt_tokens": 0, "completion_tokens": 0, "prompt_ms": 0.0, "generation_ms": 0.0}
        finish: FinishReason = "length"
        try:
            while not self._lock.acquire(timeout=0.05):  # another request is running: wait, unless cancelled
                if run.cancel.is_set():
                    run.result = Generation("", 0, 0, time.perf_counter() - began, "cancelled")
                    return
            try:
                if "_server" not in self.__dict__:
                    raise GenerationError(f"{self.manifest.name}: the generator is closed")
                phases = [(sampling.min_tokens, True), (sampling.max_tokens - sampling.min_tokens, False)]
                for index, (budget, ignore_eos) in enumerate(phases):
                    if budget <= 0:
                        continue
                    body = sampling.request(prompt + "".join(text), budget, ignore_eos=ignore_eos, seed_offset=index)
                    finish, usage = self._complete(body, run.cancel, text, emit)
                    totals["prompt_tokens"] = totals["prompt_tokens"] or usage.get("prompt_tokens", 0)
                    totals["completion_tokens"] += usage.get("completion_tokens", 0)
                    totals["prompt_ms"] += usage.get("prompt_ms", 0.0)
                    totals["generation_ms"] += usage.get("generation_ms", 0.0)
                    if finish != "length":
                        break
            finally:
                self._lock.release()
            run.result = Generation(text="".join(text), seconds=time.perf_counter() - began,
                                    finish_reason=finish, **totals)
        except BaseException as exc:  # handed to the caller's thread
            run.error = exc

    def _complete(self, body: dict, cancel: threading.Event, text: list[str], emit: Any) -> tuple[FinishReason, dict]:
        state: dict[str, Any] = {"finish": None, "usage": {}, "error": None, "count": 0}

        def on_chunk(chunk: Any) -> bool:
            if isinstance(chunk, (str, bytes)):
                chunk = json.loads(chunk)
            if "error" in chunk:
                state["error"] = chunk["error"]
                return True
            for choice in chunk.get("choices", ()):
                piece = choice.get("text") or ""
                if piece:
                    text.append(piece)
                    state["count"] += 1
                    emit(piece)
                if choice.get("finish_reason"):
                    state["finish"] = choice["finish_reason"]
            if "usage" in chunk:
                state["usage"] = chunk["usage"]
            if "timings" in chunk:
                state["timings"] = chunk["timings"]
            return cancel.is_set()

        if cancel.is_set():
            return "cancelled", {}
        returned = self._server.handle_completions(body, on_chunk)
        if isinstance(returned, dict) and "error" in returned:
            state["error"] = returned["error"]
        if state["error"] is not None:
            err = state["error"]
            raise GenerationError(f"{self.manifest.name}: {err.get('message', err) if isinstance(err, dict) else err}")
        usage = dict(state["usage"])
        timings = state.get("timings") or {}
        usage["prompt_ms"] = float(timings.get("prompt_ms") or 0.0)
        usage["generation_ms"] = float(timings.get("predicted_ms") or 0.0)
        usage.setdefault("completion_tokens", timings.get("predicted_n", state["count"]))
        usage.setdefault("prompt_tokens", timings.get("prompt_n", 0))
        if cancel.is_set() and state["finish"] is None:
            return "cancelled", usage
        return ("length" if state["finish"] == "length" else "stop"), usage

    # ------------------------------------------------------------------ chat

    def render_chat(self, messages: Sequence[dict]) -> tuple[str, tuple[str, ...]]:
        """(prompt, extra stop strings) for ``messages`` (dicts with role and content): the GGUF's
        own chat template, rendered by llama.cpp; for a model without one (a base model such as
        gemma3-270m here), a plain transcript ("System:/User:/Assistant:") that stops at the next
        "User:"."""
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str):
                raise ValueError("each message needs a role (system, user or assistant) and a string content")
        if not messages or messages[-1]["role"] == "assistant":
            raise ValueError("the last message must be the user's (or the system's)")
        if self.chat_template is None:
            lines = [f"{m['role'].capitalize()}: {m['content'].strip()}" for m in messages]
            return "\n\n".join(lines) + "\n\nAssistant:", PLAIN_STOP
        return self._apply_template(messages), ()

    def _apply_template(self, messages: Sequence[dict]) -> str:
        conn = _UnixHTTPConnection(os.path.join(self._socket_dir, "llm.sock"))
        try:
            conn.request("POST", "/apply-template", body=json.dumps({"messages": list(messages)}),
                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
            reply = conn.getresponse()
            data = json.loads(reply.read() or b"{}")
        finally:
            conn.close()
        if reply.status != 200 or "prompt" not in data:
            raise GenerationError(f"{self.manifest.name}: chat template failed: {data.get('error', reply.status)}")
        return data["prompt"]

    def chat(self, messages: Sequence[dict], *, stream: bool = False, **sampling: Any) -> Generation | TextStream:
        """Answer the conversation ``messages`` ([{"role": "user", "content": "…"}, …]) with the
        model's chat template; the keyword arguments are those of :meth:`generate`. ``stream=True``
        returns a :class:`TextStream` instead of a :class:`Generation`."""
        prompt, extra_stop = self.render_chat(messages)
        stop = tuple(sampling.pop("stop", None) or ()) + extra_stop
        if stream:
            return self.stream(prompt, stop=stop, **sampling)
        return self.generate(prompt, stop=stop, **sampling)

    # ------------------------------------------------------------------ task helpers

    def summarise(self, text: str, *, max_tokens: int = 96, max_input_tokens: int | None = None) -> str:
        """A short summary of ``text`` (greedy, so repeatable). A text longer than the context leaves
        room for is cut at the end (whole sentences where possible)."""
        text = " ".join(text.split())
        if not text:
            return ""
        budget = max_input_tokens or (self.context - max_tokens - 64)
        text = _fit(text, budget * 3)  # about 3+ characters per token for English with these vocabularies
        messages = [{"role": "user", "content": f"Summarise the following text in two or three sentences.\n\n{text}"}]
        out = self.chat(messages, max_tokens=max_tokens, temperature=0.0, repetition_penalty=1.1)
        return _tidy(out.text, whole_sentences=out.finish_reason == "length")

    def answer(self, question: str, context: str, prev_q: Sequence[str] = (), prev_a: Sequence[str] = (), *,
               max_tokens: int = 48) -> str:
        """A short answer to ``question`` from ``context`` (earlier questions and answers of the
        conversation in ``prev_q``/``prev_a``), or ``"unknown"`` when the model says it cannot tell."""
        question, context = question.strip(), " ".join(context.split())
        if not question:
            raise ValueError("question is empty")
        context = _fit(context, (self.context - max_tokens - 160) * 3)
        history = "".join(f"Question: {q.strip()}\nAnswer: {a.strip()}\n" for q, a in zip(prev_q, prev_a))
        earlier = f"Earlier questions and answers:\n{history}\n" if history else ""
        # Measured on SmolLM2-135M (README): this system/user split did best of the prompts tried.
        messages = [{"role": "system", "content": "You answer questions about a text. Reply with the few words of the "
                                                  "text that answer the question, nothing else. If the text does not "
                                                  "say, reply unknown."},
                    {"role": "user", "content": f"Text: {context}\n\n{earlier}Question: {question}"}]
        out = self.chat(messages, max_tokens=max_tokens, temperature=0.0, stop=("\n",))
        reply = _tidy(out.text, whole_sentences=False)
        lowered = reply.casefold().strip(" .")
        if not reply or lowered.startswith(("unknown", "i don't know", "i do not know", "the text does not")):
            return "unknown"
        for prefix in ("answer:", "a:"):
            if lowered.startswith(prefix):
                reply = reply[len(prefix):].strip()
        return reply


def _fit(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[: end + 1] if end > max_chars // 2 else cut


def _tidy(text: str, *, whole_sentences: bool) -> str:
    text = text.strip()
    if whole_sentences:  # cut off by max_tokens: drop the unfinished sentence
        end = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
        if end > 0:
            text = text[: end + 1]
    return text
