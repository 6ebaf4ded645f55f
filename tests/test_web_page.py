"""The web page at / (daemon/web), in a real browser: Debian's chromium driven by playwright, against
the real daemon process. Upload a photo and see the labels and boxes; a bad upload's 4xx shown; add
and remove cameras; backends, models and the log listed; the API key sent when one is typed."""

from __future__ import annotations

import base64
import functools
import http.server
import re
import shutil
import threading
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from edgewatch.daemon.app import create_app
from edgewatch.daemon.config import load_settings
from edgewatch.daemon.testing.daemon_process import DaemonProcess
from scratch import scratch_dir

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PALETTE = {"#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"}  # app.js COLOURS
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian's chromium is not installed (scripts/bootstrap-deps.sh --test installs it)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def daemon(request: pytest.FixtureRequest, installed_data_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """conftest's daemon, started once for this file's browser tests (a start takes seconds)."""
    data = scratch_dir(request, tmp_path_factory, "web") / "data"
    shutil.copytree(installed_data_dir, data)
    proc = DaemonProcess(data, cache_dir)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture()
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.problems = problems
    yield page
    context.close()


@pytest.fixture()
def snapshot_camera(photos: dict[str, Path]):
    """An HTTP 'camera' on loopback whose snapshot URL answers bus.jpg."""
    folder = photos["bus"].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{photos['bus'].name}"
    server.shutdown()
    server.server_close()


def rgb(hex_colour: str) -> list[int]:
    return [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]


@pytest.mark.slow
def test_upload_a_photo_see_labels_and_boxes_and_a_bad_upload_error(daemon, page, photos) -> None:
    from playwright.sync_api import expect

    page.goto(daemon.url + "/")
    expect(page.locator("h1")).to_contain_text("edgewatch")
    expect(page.locator("#endpoint option[value='/v1/vision/detection']")).to_have_count(1)
    expect(page.locator("#endpoint option[value='/v1/vision/custom/{model_name}']")).to_have_count(1)

    page.set_input_files("#file", photos["bus"])
    predictions = page.locator("#predictions")
    expect(predictions).to_contain_text("person")
    expect(predictions).to_contain_text("bus")
    expect(predictions).to_contain_text(re.compile(r"\d+%"))
    expect(page.locator("#json")).to_contain_text('"predictions"')
    expect(page.locator("#try-error")).to_be_hidden()
    # the boxes are drawn on the photo: each box's left edge, halfway down, is painted in a label colour
    width, pixels = page.evaluate("""() => {
        const result = JSON.parse(document.querySelector('#json').textContent);
        const c = document.querySelector('#canvas'), g = c.getContext('2d');
        return [c.width, result.predictions.map(p =>
            Array.from(g.getImageData(p.x_min, Math.round((p.y_min + p.y_max) / 2), 1, 1).data).slice(0, 3))];
    }""")
    assert width == 810  # bus.jpg is 810x1080: drawn at its own size
    painted = [p for p in pixels if p in [rgb(c) for c in PALETTE]]
    assert len(pixels) >= 3 and len(painted) >= 0.8 * len(pixels), pixels

    # another model, through /v1/vision/custom/{model_name}, on a photo dropped onto the page
    page.select_option("#endpoint", "/v1/vision/custom/{model_name}")
    page.select_option("#model", "centernet")
    expect(page.locator("#json")).to_contain_text('"command": "custom"')
    dropped = page.evaluate_handle("""b64 => {
        const data = new DataTransfer(), bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        data.items.add(new File([bytes], 'zidane.jpg', {type: 'image/jpeg'}));
        return data;
    }""", base64.b64encode(photos["zidane"].read_bytes()).decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    expect(page.locator("#canvas")).to_have_js_property("width", 1280)  # zidane.jpg is 1280x720
    expect(predictions).to_contain_text("person")
    expect(predictions).not_to_contain_text("bus")

    # a file that is not an image: the API's 4xx and its error text, shown on the page
    page.select_option("#endpoint", "/v1/vision/detection")
    bad = httpx.post(daemon.url + "/v1/vision/detection", files={"image": ("notes.txt", b"not an image", "text/plain")})
    assert 400 <= bad.status_code < 500
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}])
    error = page.locator("#try-error")
    expect(error).to_be_visible()
    expect(error).to_have_text(f"{bad.status_code}: {bad.json()['error']}")
    expect(predictions.locator("li")).to_have_count(0)
    assert page.problems == []


@pytest.mark.slow
def test_cameras_backends_models_log_and_the_api_key(daemon, page, snapshot_camera) -> None:
    from playwright.sync_api import expect

    page.goto(daemon.url + "/")
    expect(page.locator("#models")).to_contain_text("nanodet")
    expect(page.locator("#models")).to_contain_text("centernet")
    models = {m["name"]: m for m in httpx.get(daemon.url + "/v1/status/models").json()["models"]}
    p50 = next(v for v in models["nanodet"]["variants"] if v["name"] == models["nanodet"]["default_variant"])["inference_ms_p50"]
    nanodet = page.locator("#models tbody tr").filter(has_text="nanodet")
    expect(nanodet.locator("td").nth(4)).to_have_text(f"{round(p50 * 10) / 10:g}")  # its p50 in ms
    for backend in httpx.get(daemon.url + "/v1/status/backends").json()["backends"]:  # each with its probe's reason
        expect(page.locator("#backends tbody tr").filter(has_text=backend["type"]).first).to_contain_text(backend["reason"])
    expect(page.locator("#log li").first).to_be_visible()

    # add a camera that cannot connect, see it listed, remove it
    page.fill("#add-camera input[name=name]", "door")
    page.fill("#add-camera input[name=url]", "rtsp://127.0.0.1:9/none")
    page.click("#add-camera button")
    door = page.locator("article.camera[data-name='door']")
    expect(door).to_contain_text("rtsp://127.0.0.1:9/none")
    expect(door.locator(".state")).to_have_text(re.compile("not connected|not running"))
    page.once("dialog", lambda dialog: dialog.accept())
    door.locator("button.remove").click()
    expect(door).to_have_count(0)
    assert "door" not in [c["name"] for c in httpx.get(daemon.url + "/v1/cameras").json()["cameras"]]

    # a camera the API refuses: its 4xx error shown
    page.fill("#add-camera input[name=name]", "local")
    page.fill("#add-camera input[name=url]", "/dev/video0")
    page.click("#add-camera button")
    expect(page.locator("#camera-add-error")).to_have_text(re.compile(r"^4\d\d: .+"))
    expect(page.locator("article.camera[data-name='local']")).to_have_count(0)

    # a camera that works: connected, its latest snapshot shown
    page.fill("#add-camera input[name=name]", "yard")
    page.fill("#add-camera input[name=url]", snapshot_camera)
    page.click("#add-camera button")
    yard = page.locator("article.camera[data-name='yard']")
    expect(yard.locator(".state")).to_have_text("connected")
    expect(page.locator("#camera-add-error")).to_be_hidden()
    snapshot = yard.locator("img")
    expect(snapshot).to_be_visible()
    expect(snapshot).to_have_attribute("src", re.compile("^blob:"))
    expect(yard).to_contain_text(re.compile(r"in view: .*person \d"))  # the camera's counts
    assert snapshot.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0

    # an API key typed in the page is kept and sent on every call
    page.fill("#api-key", "my-key")
    page.dispatch_event("#api-key", "change")
    with page.expect_request(lambda r: r.url.endswith("/v1/cameras") and r.headers.get("x-api-key") == "my-key"):
        page.reload()
    assert page.evaluate("localStorage.getItem('edgewatch.apiKey')") == "my-key"
    assert page.problems == []


def test_browsers_get_the_page_and_api_clients_json(tmp_path: Path) -> None:
    """GET / by Accept; the page and its files need no key (this client is not on the box), and it
    loads nothing from elsewhere."""
    with TestClient(create_app(load_settings(data_dir=tmp_path))) as client:
        lan = {"x-test-client-host": "192.168.1.20"}  # conftest: a client on the LAN, not the box itself
        assert client.get("/", headers=lan).json()["docs"] == "/schema/swagger"
        assert client.get("/", headers={"Accept": "application/json"}).json()["success"] is True
        page = client.get("/", headers={**lan, "Accept": BROWSER_ACCEPT})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Accept" in page.headers["vary"] and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
        assert not re.findall(r"https?://", page.text)
        assert {"/ui/app.js", "/ui/style.css", "/ui/alpine-3.17.5.min.js"} <= set(urls)
        for url in urls:
            if url.startswith("/ui/"):
                asset = client.get(url, headers=lan)
                assert asset.status_code == 200 and len(asset.content) > 1000, url
        assert "MIT License" in client.get("/ui/LICENSE-alpinejs.md", headers=lan).text
        # the camera snapshots are the cameras' (admin) data: not for this client without a key
        assert client.get("/v1/cameras/yard/snapshot", headers=lan).status_code == 403
        schema = client.get("/schema/openapi.json").json()["paths"]
        assert not [p for p in schema if p == "/" or p.startswith("/ui") or p.endswith("/snapshot")]
