"""Property-based tests (hypothesis) of the two parsers that take untrusted text: the multipart form
parser every inference route uses (daemon/api/forms.py) and the config loader (daemon/config.py).

- forms: any bytes under any Content-Type (any boundary, any part headers) give a Form or an
  ApiError with a 4xx status, nothing else; forms built by real encoders (urllib3's, httpx's)
  round-trip their fields and files exactly.
- config: any YAML document and any EDGEWATCH_* values give Settings or a ConfigError with a
  message, nothing else; a secret (mqtt.password, a camera's password, an API key) never appears in
  the message; valid configs round-trip.

Bounded and reproducible: a fixed number of examples per property, derandomized. Each bug they found
has a plain regression test at the end, with the concrete input.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from unittest import mock

import httpx
import pytest
import urllib3
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from litestar import Litestar, Request, post
from litestar.testing import TestClient
from multipart import parse_options_header

from edgewatch.daemon.api.errors import ApiError, handle_api_error
from edgewatch.daemon.api.forms import Form, _parse_body, read_form
from edgewatch.daemon.config import ConfigError, Settings, load_settings

PROPS = settings(max_examples=int(os.environ.get("EDGEWATCH_PROPERTY_EXAMPLES", "150")), derandomize=True,
                 deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


# -- the multipart form parser -------------------------------------------------------------------------------

def parse(body: bytes, content_type: str) -> Form | ApiError:
    """What the parser makes of ``body``: a Form, or the ApiError it refused it with (anything else
    propagates and fails the property)."""
    mime, options = parse_options_header(content_type)
    form = Form()
    try:
        _parse_body(body, mime, options, form)
    except ApiError as exc:
        return exc
    return form


def assert_refused_well(result: Form | ApiError) -> None:
    if isinstance(result, ApiError):
        assert 400 <= result.status < 500 and result.message, (result.status, result.message)


TOKEN = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=20)
HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=60)
CHARSETS = st.sampled_from(["utf-8", "latin-1", "utf-16", "ascii", "shift_jis", "idna", "punycode", "rot13",
                            "base64", "zlib", "no-such-codec", "", "utf-8'", "UTF-8"])


@st.composite
def part_headers(draw, well_formed: bool = False) -> bytes:
    """Content-Disposition and Content-Type lines as clients and attackers write them."""
    lines = []
    if well_formed or draw(st.booleans()):
        params = [f'name="{draw(HEADER_VALUE)}"' if draw(st.booleans()) else f"name={draw(TOKEN)}"]
        if draw(st.booleans()):
            params.append(f'filename="{draw(HEADER_VALUE)}"')
        if draw(st.booleans()):
            params.append(f"filename*=UTF-8''{draw(TOKEN)}")
        disposition = "form-data" if well_formed else draw(st.sampled_from(["form-data", "attachment", "", "FORM-DATA"]))
        lines.append(f"Content-Disposition: {disposition}; {'; '.join(params)}")
    if draw(st.booleans()):
        ctype = draw(st.sampled_from(["text/plain", "image/jpeg", "application/octet-stream", "text/html", "",
                                      "multipart/mixed"]))
        charset = draw(st.one_of(st.none(), CHARSETS))
        lines.append(f"Content-Type: {ctype}" + (f"; charset={charset}" if charset is not None else ""))
    if draw(st.booleans()):
        lines.append(f"{draw(TOKEN)}: {draw(HEADER_VALUE)}")
    if not well_formed and draw(st.booleans()):  # a header line without a colon, or folded
        lines.append(draw(st.sampled_from(["garbage", " folded continuation", "Content-Length: -1"])))
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


@st.composite
def multipart_bodies(draw) -> tuple[bytes, str]:
    boundary = draw(st.text(string.ascii_letters + string.digits + "'()+_,-./:=? ", min_size=1, max_size=70))
    well_formed = draw(st.booleans())  # only the part headers and contents random: the parts are reached
    sep = f"--{boundary}".encode()
    out = b""
    if not well_formed and draw(st.booleans()):
        out += draw(st.binary(max_size=40))  # a preamble
    for _ in range(draw(st.integers(0, 6))):
        newline = b"\r\n" if well_formed else draw(st.sampled_from([b"\r\n", b"\n", b""]))
        out += sep + newline + draw(part_headers(well_formed)) + b"\r\n\r\n"
        out += draw(st.binary(max_size=200)) + (b"\r\n" if well_formed else draw(st.sampled_from([b"\r\n", b"", b"\n"])))
    out += sep + (b"--\r\n" if well_formed else draw(st.sampled_from([b"--\r\n", b"--", b"", b"\r\n", b"-"])))
    if not well_formed:
        out += draw(st.binary(max_size=20))
    sent = f'"{boundary}"' if well_formed else draw(st.one_of(st.just(boundary), TOKEN, st.just("")))
    return out, f"multipart/form-data; boundary={sent}"


@PROPS
@given(body=st.binary(max_size=2048), content_type=st.one_of(
    st.sampled_from(["multipart/form-data", "application/x-www-form-urlencoded", "application/json", "", "text/plain"]),
    st.builds(lambda b: f"multipart/form-data; boundary={b}", HEADER_VALUE),
    HEADER_VALUE))
def test_any_bytes_under_any_content_type_give_a_form_or_a_4xx(body: bytes, content_type: str) -> None:
    assert_refused_well(parse(body, content_type))


@PROPS
@given(body=multipart_bodies())
def test_any_multipart_body_with_any_part_headers_gives_a_form_or_a_4xx(body: tuple[bytes, str]) -> None:
    assert_refused_well(parse(*body))


NAME = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"], exclude_characters='"%\\'),
               min_size=1, max_size=20).filter(lambda n: n not in ("image",))
TEXT_VALUE = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=200)
FILENAME = st.text(string.ascii_letters + string.digits + "._- ", min_size=1, max_size=20)


@st.composite
def real_forms(draw) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
    names = draw(st.lists(NAME, max_size=12, unique=True))
    split = draw(st.integers(0, len(names)))
    fields = {n: draw(TEXT_VALUE) for n in names[:split]}
    files = {n: (draw(FILENAME), draw(st.binary(max_size=2000)),
                 draw(st.sampled_from(["image/jpeg", "application/octet-stream", "image/png"])))
             for n in names[split:]}
    return fields, files


def encode(encoder: str, fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    if encoder == "urllib3":
        return urllib3.encode_multipart_formdata({**fields, **files})
    request = httpx.Request("POST", "http://box/", data=fields,
                            files=files or {"": ("empty.bin", b"", "application/octet-stream")})
    body = request.read()
    return body, request.headers["content-type"]


@PROPS
@given(form=real_forms(), encoder=st.sampled_from(["urllib3", "httpx"]))
def test_forms_built_by_real_encoders_round_trip_exactly(form, encoder: str) -> None:
    fields, files = form
    body, content_type = encode(encoder, fields, files)
    parsed = parse(body, content_type)
    assert isinstance(parsed, Form), parsed.message
    files_sent = {name: data for name, (_, data, _) in files.items()}
    if encoder == "httpx" and not files:
        files_sent = {"": b""}  # httpx needs a file part to build multipart at all
    assert parsed.fields == fields
    assert parsed.files == files_sent
    assert parsed.file_parts == list(files_sent.items())
    assert parsed.first_file == (next(iter(files_sent.values())) if files_sent else None)


@PROPS
@given(fields=st.dictionaries(NAME, TEXT_VALUE, max_size=10))
def test_urlencoded_and_json_forms_round_trip(fields: dict[str, str]) -> None:
    import json
    from urllib.parse import urlencode

    assert parse(urlencode(fields).encode(), "application/x-www-form-urlencoded").fields == fields
    assert parse(json.dumps(fields).encode(), "application/json").fields == fields


# read_form end to end, through a Litestar app: the body limits, the query, the error answers
@post("/form", status_code=200)
async def echo_form(request: Request) -> dict:
    form = await read_form(request, require_form_type=True)
    return {"fields": form.fields, "files": {k: v.hex() for k, v in form.files.items()}}


FORM_APP = Litestar([echo_form], exception_handlers={ApiError: handle_api_error}, request_max_body_size=1_000_000)


@settings(PROPS, max_examples=min(PROPS.max_examples, 60))
@given(body=st.one_of(multipart_bodies(), st.tuples(st.binary(max_size=512), HEADER_VALUE)),
       query=st.dictionaries(TOKEN, st.text(string.printable, max_size=10), max_size=3))
def test_read_form_answers_a_form_or_a_4xx_envelope(body: tuple[bytes, str], query: dict[str, str]) -> None:
    content, content_type = body
    with TestClient(FORM_APP) as client:
        r = client.post("/form", content=content, params=query,  # the header as raw bytes, as a client may
                        headers={"content-type": content_type.encode("utf-8")})
    assert r.status_code == 200 or (400 <= r.status_code < 500 and r.json()["success"] is False), r.text
    if r.status_code == 200:
        assert set(query) <= set(r.json()["fields"])  # the query's fields, unless the body sends them too


# -- the config loader ---------------------------------------------------------------------------------------

SECRET = "Zq8-secret-VALUE-9x"  # must never appear in a message
SECTIONS = sorted(Settings.model_fields)
KEYS = sorted({k for name in SECTIONS for k in (
    getattr(Settings.model_fields[name].annotation, "model_fields", {}) or {})} | {"password", "url", "name", "keys"})
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["", "yes", "0x10", "1e400", "-1", "~"]))
YAML_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner,
                                                 max_size=4)), max_leaves=12)
DOCUMENTS = st.one_of(
    st.dictionaries(st.sampled_from(SECTIONS), YAML_VALUES, max_size=5).map(
        lambda d: yaml.safe_dump(d, allow_unicode=True)),
    YAML_VALUES.map(lambda v: yaml.safe_dump(v, allow_unicode=True)),
    st.text(max_size=300),  # anything, valid YAML or not
    st.sampled_from(["a: [", "{", "- - -", "mqtt: !!python/object:os.system {}", "\t", "%YAML 9.9\n---\n",
                     "&a [*a]", "a: &x 1\nb: *y"]))


def load(tmp_path: Path, document: str, env: dict[str, str] | None = None) -> Settings | ConfigError:
    path = tmp_path / "config.yaml"
    path.write_text(document, encoding="utf-8", errors="surrogateescape")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWATCH_")}
    with mock.patch.dict(os.environ, {**clean, **(env or {})}, clear=True):
        try:
            return load_settings(path, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
        except ConfigError as exc:
            return exc


def assert_config_error_well(result: Settings | ConfigError) -> None:
    if isinstance(result, ConfigError):
        message = str(result)
        assert message.strip() and SECRET not in message, message


@PROPS
@given(document=DOCUMENTS)
def test_any_yaml_document_gives_settings_or_a_config_error(tmp_path_factory, document: str) -> None:
    assert_config_error_well(load(tmp_path_factory.mktemp("cfg"), document))


ENV_NAMES = ["EDGEWATCH_SERVER_PORT", "EDGEWATCH_SERVER_HOST", "EDGEWATCH_MQTT_PORT", "EDGEWATCH_MQTT_HOST",
             "EDGEWATCH_MQTT_PASSWORD", "EDGEWATCH_LOG_LEVEL", "EDGEWATCH_NODE_ID", "EDGEWATCH_CAMERAS",
             "EDGEWATCH_SERVER", "EDGEWATCH_MQTT", "EDGEWATCH_MAX_CAMERAS", "EDGEWATCH_BACKEND",
             "EDGEWATCH_ACCEPT_LICENCES", "EDGEWATCH_SERVER_ALLOWED_HOSTS", "EDGEWATCH_ACCESS_TRUSTED_NETWORKS",
             "EDGEWATCH_ACCESS_KEYS", "EDGEWATCH_TASK_API_KEYS", "EDGEWATCH_INFERENCE_WORKERS", "EDGEWATCH_DETECTION",
             "EDGEWATCH_NO_SUCH_KEY"]
ENV_VALUES = st.one_of(st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
                               max_size=30),
                       st.sampled_from(["[", "{}", "[]", "null", "1e999", "-5", "99999", '{"a": 1}', "[{}]"]))
# where a secret may be sent in the environment
ENV_SECRETS = {"EDGEWATCH_MQTT_PASSWORD": SECRET, "EDGEWATCH_MQTT": '{"password": "%s", "port": "x"}' % SECRET,
               "EDGEWATCH_TASK_API_KEYS": '{"me": "%s"}' % SECRET,
               "EDGEWATCH_ACCESS_KEYS": '{"me": {"hash": "%s", "scope": "admin"}}' % SECRET,
               "EDGEWATCH_CAMERAS": '[{"name": "a", "url": "rtsp://u:%s@cam/", "fps": "x"}]' % SECRET}


@PROPS
@given(env=st.dictionaries(st.sampled_from(ENV_NAMES), ENV_VALUES, max_size=4),
       secrets=st.lists(st.sampled_from(sorted(ENV_SECRETS)), max_size=2),
       document=st.sampled_from(["", "mqtt:\n  password: " + SECRET + "\n", "server: {port: 0}\n"]))
def test_any_environment_gives_settings_or_a_config_error(tmp_path_factory, env: dict[str, str], secrets: list[str],
                                                          document: str) -> None:
    env = {**env, **{name: ENV_SECRETS[name] for name in secrets}}
    assert_config_error_well(load(tmp_path_factory.mktemp("cfg"), document, env))


@PROPS
@given(sections=st.dictionaries(st.sampled_from(SECTIONS), YAML_VALUES, max_size=4),
       where=st.sampled_from(["mqtt", "camera", "task_api", "access"]))
def test_a_secret_never_appears_in_a_config_error(tmp_path_factory, sections: dict, where: str) -> None:
    """The config is broken somewhere (or not); wherever the secret sits, the message never shows it."""
    sections = {k: v for k, v in sections.items() if k not in ("mqtt", "cameras", "task_api", "access")}
    if where == "mqtt":
        sections["mqtt"] = {"host": "broker", "password": SECRET, "port": sections.pop("max_cameras", 1883)}
    elif where == "camera":
        sections["cameras"] = [{"name": "front", "url": f"rtsp://user:{SECRET}@cam/stream",
                                "fps": sections.pop("max_cameras", 5)}]
    elif where == "task_api":
        sections["task_api"] = {"keys": {"me": SECRET}}
    else:
        sections["access"] = {"keys": {"me": {"hash": SECRET, "scope": "admin"}}}
    assert_config_error_well(load(tmp_path_factory.mktemp("cfg"), yaml.safe_dump(sections, allow_unicode=True)))


VALID = st.fixed_dictionaries({
    "log_level": st.sampled_from(["debug", "info", "warning", "error"]),
    "node_id": st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z"),
    "max_cameras": st.integers(1, 256),
    "server": st.fixed_dictionaries({"port": st.integers(1, 65535),
                                     "allowed_hosts": st.lists(st.from_regex(r"\A[a-z][a-z0-9-]{0,10}\.lan\Z"),
                                                               max_size=3)}),
    "mqtt": st.fixed_dictionaries({"host": st.one_of(st.none(), st.from_regex(r"\A[a-z][a-z0-9.-]{0,15}\Z")),
                                   "port": st.integers(1, 65535),
                                   "password": st.one_of(st.none(), st.text(max_size=20))}),
    "cameras": st.lists(st.fixed_dictionaries({
        "name": st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,10}\Z"),
        "url": st.from_regex(r"\Artsp://[a-z]{1,8}(:[1-9][0-9]{0,3})?/[a-z0-9]{0,8}\Z"),
        "fps": st.floats(0.1, 30), "enabled": st.booleans()}), max_size=3, unique_by=lambda c: c["name"]),
})


@PROPS
@given(config=VALID)
def test_valid_configs_round_trip(tmp_path_factory, config: dict) -> None:
    tmp = tmp_path_factory.mktemp("cfg")
    loaded = load(tmp, yaml.safe_dump(config, allow_unicode=True))
    assert isinstance(loaded, Settings), str(loaded)
    dumped = loaded.model_dump(mode="json")
    for key in ("log_level", "node_id", "max_cameras"):
        assert dumped[key] == config[key]
    assert {k: dumped["server"][k] for k in config["server"]} == config["server"]
    assert {k: dumped["mqtt"][k] for k in config["mqtt"]} == config["mqtt"]
    assert [{k: cam[k] for k in c} for cam, c in zip(dumped["cameras"], config["cameras"])] == config["cameras"]
    # and what was loaded loads again to the same settings
    assume(len(config["cameras"]) == len(dumped["cameras"]))
    dumped.pop("data_dir"), dumped.pop("cache_dir")
    again = load(tmp, yaml.safe_dump(dumped, allow_unicode=True))
    assert isinstance(again, Settings), str(again)
    assert again.model_dump(mode="json") == loaded.model_dump(mode="json")


# -- regressions: what these properties found ----------------------------------------------------------------

@pytest.mark.parametrize("charset", ["no-such-codec", "base64", "rot13", "zlib", "idna"])
def test_a_text_part_in_an_unknown_charset_is_read_as_utf8(charset: str) -> None:
    """Found by hypothesis: a text part with ``Content-Type: text/plain; charset=no-such-codec`` raised
    LookupError, and ``charset=idna`` UnicodeError (internal errors, 500), instead of being read."""
    body = (f'--XX\r\nContent-Disposition: form-data; name="userid"\r\nContent-Type: text/plain; charset={charset}'
            '\r\n\r\nj\xc3\xa9r\xc3\xb4me\r\n--XX--\r\n').encode("latin-1")
    parsed = parse(body, "multipart/form-data; boundary=XX")
    assert isinstance(parsed, Form) and parsed.fields == {"userid": "jérôme"}


@pytest.mark.parametrize("name", ["EDGEWATCH_CAMERAS", "EDGEWATCH_SERVER", "EDGEWATCH_SERVER_ALLOWED_HOSTS"])
def test_an_environment_value_that_is_not_json_is_a_config_error(tmp_path: Path, name: str) -> None:
    """Found by hypothesis: EDGEWATCH_CAMERAS=notjson (a list or section that is not JSON) raised
    pydantic-settings' SettingsError, not ConfigError: `edgewatch serve` showed a traceback."""
    result = load(tmp_path, "", {name: "[" + SECRET})
    assert isinstance(result, ConfigError)
    assert "must be JSON" in str(result) and SECRET not in str(result)
