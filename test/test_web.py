"""The car's web page without a browser: security, click-to-label mapping, frames, one driver, joystick timeout."""
from __future__ import annotations

import asyncio
import http.client
import json
import struct
import threading
import time

import cv2
import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp", reason="the web page needs the web extra: pip install -e '.[web]'")

from jetracer_trt.dataset import DatasetWriteError, DatasetWriter  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.sim.camera import image_to_label  # noqa: E402
from jetracer_trt.web import WebApp, app as web_app, label_from_pixel  # noqa: E402


class FakeBackend:
    """Records every call; ``fail`` makes ``label`` raise it."""

    def __init__(self, root="/nonexistent/dataset"):
        self.root = root
        self.calls: list[tuple] = []
        self.labels: list[tuple] = []
        self.fail: Exception | None = None
        self.lock = threading.Lock()

    def label(self, frame, x, y):
        if self.fail is not None:
            raise self.fail
        self.labels.append((frame, x, y))
        return f"images/fake_{len(self.labels):06d}.jpg"

    def undo(self):
        if not self.labels:
            return None
        self.labels.pop()
        return f"images/fake_{len(self.labels) + 1:06d}.jpg"

    def drive(self, steering, throttle, held, client_id):
        with self.lock:
            self.calls.append(("drive", steering, throttle, held, client_id))

    def estop(self):
        self.calls.append(("estop",))

    def set_recording(self, on):
        self.calls.append(("record", on))

    def delete(self, image):
        self.calls.append(("delete", image))

    def dataset_root(self):
        return self.root

    def status(self):
        return {"mode": "manual", "session_samples": len(self.labels), "recording": False}

    def drives(self):
        with self.lock:
            return [call for call in self.calls if call[0] == "drive"]


@pytest.fixture
def served():
    backend = FakeBackend()
    with WebApp(backend, port=0, drive_timeout_s=0.3) as app:
        yield app, backend


@pytest.fixture
def served_with_token(tmp_path):
    backend = FakeBackend(tmp_path / "data")
    with DatasetWriter(tmp_path / "data") as writer:
        writer.append(_frame(), 0.5, -0.5)
    with WebApp(backend, port=0, token="s3cret-token") as app:
        yield app, backend


def _request(app, method, path, body=None, headers=None):
    """(status, parsed JSON or raw bytes): a raw HTTP request, the path sent as it is."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    conn.request(method, path, body=data, headers=all_headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def _frame(width=320, height=240, value=0):
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = value
    return frame


def _show(app, stamp, frame=None):
    app.show_frame(stamp, _frame() if frame is None else frame, {"target": [0.1, 0.2], "steering": 0.3})
    time.sleep(0.05)  # handed over to the app's loop thread


# --- security ------------------------------------------------------------------------------------------------------


def test_binds_to_loopback_by_default():
    app = WebApp(FakeBackend())
    assert app.host == "127.0.0.1" and app.url == "http://127.0.0.1:8080/"


def test_other_hosts_need_a_token():
    with pytest.raises(JetracerError, match="needs a token"):
        WebApp(FakeBackend(), host="0.0.0.0")
    app = WebApp(FakeBackend(), host="0.0.0.0", token="abc")
    assert app.url == "http://127.0.0.1:8080/?token=abc"


def test_page_loads(served):
    app, _ = served
    status, body = _request(app, "GET", "/")
    assert status == 200 and b'id="camera"' in body and b'id="joystick"' in body


ROUTES = [("GET", "/", None), ("GET", "/api/status", None), ("POST", "/api/label", {"stamp_ns": 1, "u": 1, "v": 1}),
          ("POST", "/api/undo", {}), ("POST", "/api/record", {"on": True}), ("POST", "/api/estop", {}),
          ("GET", "/api/dataset", None), ("GET", "/api/dataset?page=0&per_page=5", None),
          ("GET", "/api/dataset/image?id=images/nope_000000.jpg", None),
          ("POST", "/api/dataset/delete", {"id": "images/nope_000000.jpg"})]


@pytest.mark.parametrize("method,path,body", ROUTES)
def test_every_request_needs_the_token(served_with_token, method, path, body):
    app, backend = served_with_token
    query = "&" if "?" in path else "?"
    assert _request(app, method, path, body)[0] == 401
    assert _request(app, method, path, body, headers={"X-Token": "s3cret-tokem"})[0] == 403
    assert _request(app, method, path + query + "token=wrong", body)[0] == 403
    assert backend.calls == [] and backend.labels == []
    # answered by the route itself: 409 a frame not in memory, 404 a sample not in the dataset
    assert _request(app, method, path, body, headers={"X-Token": "s3cret-token"})[0] in (200, 404, 409)
    assert _request(app, method, path + query + "token=s3cret-token", body)[0] in (200, 404, 409)


def test_websocket_needs_the_token(served_with_token):
    app, _ = served_with_token

    async def connect(query):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{app.port}/ws{query}"):
                return 101

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        asyncio.run(connect(""))
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        asyncio.run(connect("?token=nope"))
    assert refused.value.status == 403
    assert asyncio.run(connect("?token=s3cret-token")) == 101


def test_other_web_sites_are_refused(served):
    app, backend = served
    # DNS rebinding: a site's name resolving to 127.0.0.1 reaches the port, but its Host header is not ours
    assert _request(app, "GET", "/", headers={"Host": f"evil.example:{app.port}"})[0] == 403
    # a page on another origin posting to ours (WebSockets and simple POSTs are not stopped by CORS)
    assert _request(app, "POST", "/api/estop", {}, headers={"Origin": "http://evil.example"})[0] == 403
    assert backend.calls == []
    assert _request(app, "POST", "/api/estop", {}, headers={"Origin": f"http://127.0.0.1:{app.port}"})[0] == 200
    assert _request(app, "GET", "/", headers={"Host": f"localhost:{app.port}"})[0] == 200


def test_oversized_body_is_refused(served):
    app, backend = served
    _show(app, 5)
    body = json.dumps({"stamp_ns": 5, "u": 1, "v": 1, "pad": "x" * (web_app.MAX_BODY_BYTES + 1)}).encode()
    assert _request(app, "POST", "/api/label", body)[0] == 413
    assert backend.labels == []


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/page.html", "/app.py",
                                  "/static/../app.py", "/index.jsonl", "/images/x.jpg", "//etc/passwd",
                                  "/api/../../dataset.json", "/..%2f..%2fetc%2fpasswd"])
def test_no_path_reaches_a_file(served, path):
    app, _ = served
    status, body = _request(app, "GET", path)
    assert status == 404, (path, body)


def test_label_needs_json(served):
    app, backend = served
    assert _request(app, "POST", "/api/label", b"stamp_ns=1", headers={"Content-Type": "text/plain"})[0] == 415
    assert _request(app, "POST", "/api/label", b"[1, 2]")[0] == 400
    assert _request(app, "POST", "/api/label", b"{not json")[0] == 400
    assert backend.labels == []


# --- click to label ------------------------------------------------------------------------------------------------


def test_click_mapping_math():
    assert label_from_pixel(0, 0, 224, 224) == (-1.0, -1.0)
    assert label_from_pixel(224, 224, 224, 224) == (1.0, 1.0)
    assert label_from_pixel(112, 112, 224, 224) == (0.0, 0.0)
    assert label_from_pixel(56, 168, 224, 224) == (-0.5, 0.5)
    assert label_from_pixel(80, 180, 320, 240) == (-0.5, 0.5)
    uv = np.random.default_rng(0).uniform(0, 224, (50, 2))  # the simulator's labels use the same convention
    assert np.allclose([label_from_pixel(u, v, 224, 224) for u, v in uv], image_to_label(uv, 224, 224), atol=1e-12)


def test_click_labels_the_frame_with_that_stamp(served):
    app, backend = served
    first, second = _frame(value=10), _frame(value=20)
    _show(app, 1_700_000_000_123_456_789, first)  # a real nanosecond stamp: more digits than a JS number holds
    _show(app, 1_700_000_000_156_789_012, second)
    status, reply = _request(app, "POST", "/api/label", {"stamp_ns": "1700000000123456789", "u": 80.5, "v": 180})
    assert status == 200 and reply["image"] == "images/fake_000001.jpg"
    (frame, x, y), = backend.labels
    assert frame.rgb is first and frame.stamp_ns == 1_700_000_000_123_456_789
    assert (x, y) == (2 * 80.5 / 320 - 1, 2 * 180 / 240 - 1) == (reply["x"], reply["y"])


def test_click_on_a_frame_no_longer_in_memory_is_refused(served):
    app, backend = served
    for stamp in range(1, 40):  # the ring holds 30
        app.show_frame(stamp, _frame())
    time.sleep(0.1)
    status, reply = _request(app, "POST", "/api/label", {"stamp_ns": 2, "u": 1, "v": 1})
    assert status == 409 and "no longer in memory" in reply["error"]
    assert _request(app, "POST", "/api/label", {"stamp_ns": 39, "u": 1, "v": 1})[0] == 200


@pytest.mark.parametrize("body", [{"stamp_ns": 7, "u": 321, "v": 1}, {"stamp_ns": 7, "u": -0.5, "v": 1},
                                  {"stamp_ns": 7, "u": 1, "v": float("nan")}, {"stamp_ns": 7, "u": "1", "v": 1},
                                  {"stamp_ns": "7x", "u": 1, "v": 1}, {"stamp_ns": True, "u": 1, "v": 1}])
def test_bad_clicks_are_refused(served, body):
    app, backend = served
    _show(app, 7)
    data = json.dumps(body).replace("NaN", "1e999").encode()
    assert _request(app, "POST", "/api/label", data)[0] == 400
    assert backend.labels == []


def test_undo_and_record(served):
    app, backend = served
    _show(app, 3)
    assert _request(app, "POST", "/api/label", {"stamp_ns": 3, "u": 1, "v": 1})[0] == 200
    assert _request(app, "POST", "/api/undo", {}) == (200, {"removed": "images/fake_000001.jpg"})
    assert _request(app, "POST", "/api/undo", {}) == (200, {"removed": None})
    assert _request(app, "POST", "/api/record", {"on": True}) == (200, {"recording": True})
    assert _request(app, "POST", "/api/record", {"on": "yes"})[0] == 400
    assert backend.calls == [("record", True)]


def test_a_full_disk_is_reported(served):
    app, backend = served
    _show(app, 3)
    backend.fail = DatasetWriteError("cannot write to dataset d: No space left on device; this sample was not "
                                     "stored", 28)
    status, reply = _request(app, "POST", "/api/label", {"stamp_ns": 3, "u": 1, "v": 1})
    assert status == 507 and "No space left" in reply["error"]


# --- live view -----------------------------------------------------------------------------------------------------


def _split(message: bytes) -> tuple[dict, np.ndarray]:
    (length,) = struct.unpack(">I", message[:4])
    header = json.loads(message[4:4 + length])
    image = cv2.imdecode(np.frombuffer(message[4 + length:], np.uint8), cv2.IMREAD_COLOR)
    return header, image


def test_frames_go_out_once_encoded_one_in_flight_per_client(served, monkeypatch):
    app, _ = served
    encodes = []
    real_encode = web_app._encode_jpeg
    monkeypatch.setattr(web_app, "_encode_jpeg", lambda rgb: encodes.append(1) or real_encode(rgb))

    async def watch():
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{app.port}/ws"
            async with session.ws_connect(url) as one, session.ws_connect(url) as two:
                app.show_frame(42, _frame(value=200), {"target": [0.5, -0.25], "steering": -0.4, "throttle": 0.1})
                await asyncio.sleep(0.05)
                got = []
                for ws in (one, two):
                    await ws.send_json({"type": "next"})
                    got.append(_split((await ws.receive(timeout=5)).data))
                await one.send_json({"type": "next"})  # no new frame: the status comes instead, in time
                started = time.monotonic()
                waited = (await one.receive(timeout=5)).json(), time.monotonic() - started
                return got, waited

    got, (status_message, waited) = asyncio.run(watch())
    for header, image in got:
        assert header["stamp_ns"] == "42" and (header["width"], header["height"]) == (320, 240)
        assert header["overlay"] == {"target": [0.5, -0.25], "steering": -0.4, "throttle": 0.1}
        assert header["status"]["mode"] == "manual"
        assert image.shape == (240, 320, 3) and abs(int(image[..., 2].mean()) - 200) < 3  # BGR: red is channel 2
    assert len(encodes) == 1
    assert status_message["type"] == "status" and 0.3 < waited < 2


# --- the joystick --------------------------------------------------------------------------------------------------


def _drive(steering, throttle, held):
    return {"type": "drive", "steering": steering, "throttle": throttle, "held": held}


def test_one_client_drives_at_a_time(served):
    app, backend = served

    async def two_pages():
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{app.port}/ws"
            async with session.ws_connect(url) as one, session.ws_connect(url) as two:
                await one.send_json(_drive(0.2, 0.5, True))
                await asyncio.sleep(0.05)
                await two.send_json(_drive(-1.0, 1.0, True))
                refusal = await two.receive_json(timeout=5)
                await one.send_json(_drive(0.0, 0.0, False))
                await asyncio.sleep(0.05)
                await two.send_json(_drive(-0.5, 0.25, True))
                await asyncio.sleep(0.05)
                return refusal

    refusal = asyncio.run(two_pages())
    assert refusal == {"type": "drive", "ok": False, "reason": "another client is driving"}
    drives = backend.drives()
    first, second = drives[0][4], drives[-1][4]
    assert first != second
    assert drives[:3] == [("drive", 0.2, 0.5, True, first), ("drive", 0.0, 0.0, False, first),
                          ("drive", -0.5, 0.25, True, second)]
    assert drives[-1] == ("drive", 0.0, 0.0, False, second)  # its page closed while it held the stick


def test_a_silent_joystick_lets_go(served):
    app, backend = served

    async def hold_then_go_quiet():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{app.port}/ws") as ws:
                await ws.send_json(_drive(0.0, 2.0, True))  # clipped to 1
                started = time.monotonic()
                while len(backend.drives()) < 2 and time.monotonic() - started < 3:
                    await asyncio.sleep(0.01)
                return time.monotonic() - started

    waited = asyncio.run(hold_then_go_quiet())
    drives = backend.drives()
    assert [d[1:4] for d in drives] == [(0.0, 1.0, True), (0.0, 0.0, False)]
    assert 0.25 < waited < 0.8


def test_estop_lets_go_of_the_stick(served):
    app, backend = served

    async def hold_and_stop():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{app.port}/ws") as ws:
                await ws.send_json(_drive(0.0, 0.5, True))
                await asyncio.sleep(0.05)
                async with session.post(f"http://127.0.0.1:{app.port}/api/estop", json={}) as response:
                    assert response.status == 200
                return list(backend.calls)

    calls = asyncio.run(hold_and_stop())
    assert calls[1] == ("estop",) and calls[2][1:4] == (0.0, 0.0, False)


def test_stop_lets_go_of_the_stick():
    backend = FakeBackend()
    app = WebApp(backend, port=0).start()

    async def hold():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{app.port}/ws") as ws:
                await ws.send_json(_drive(0.1, 0.5, True))
                await asyncio.sleep(0.05)
                app.stop()
                await asyncio.sleep(0.05)

    asyncio.run(hold())
    assert [d[3] for d in backend.drives()] == [True, False]


@pytest.mark.parametrize("message", [_drive("0", 0.5, True), _drive(0.0, float("inf"), True),
                                     _drive(0.0, 0.5, 1)])
def test_bad_joystick_messages_do_not_drive(served, message):
    app, backend = served

    async def send():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{app.port}/ws") as ws:
                await ws.send_str(json.dumps(message).replace("Infinity", "1e999"))
                return await ws.receive_json(timeout=5)

    assert asyncio.run(send())["ok"] is False
    assert backend.drives() == []


def test_the_port_in_use_is_one_clear_error(served):
    app, _ = served
    with pytest.raises(JetracerError, match=f"cannot serve the web page on 127.0.0.1:{app.port}"):
        WebApp(FakeBackend(), port=app.port).start()


def test_numpy_overlay_and_status_values_go_out_as_json(served):
    app, backend = served
    backend.status = lambda: {"mode": "manual", "latency_ms": np.float32(12.5)}
    app.show_frame(9, _frame(), {"target": np.array([0.25, -0.5], np.float32), "steering": np.float64(0.5)})
    time.sleep(0.05)

    async def one_frame():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{app.port}/ws") as ws:
                await ws.send_json({"type": "next"})
                return _split((await ws.receive(timeout=5)).data)[0]

    header = asyncio.run(one_frame())
    assert header["overlay"] == {"target": [0.25, -0.5], "steering": 0.5}
    assert header["status"]["latency_ms"] == 12.5
    assert _request(app, "GET", "/api/status")[1]["latency_ms"] == 12.5


# --- the simulator backend (the browser test drives it through the page) ------------------------------------------


def test_sim_backend_labels_records_drives_and_stops(tmp_path):
    from jetracer_trt.dataset import read_dataset
    from jetracer_trt.web.app import Frame
    from jetracer_trt.web.sim_backend import SimBackend

    backend = SimBackend(tmp_path / "data", track_seed=3)
    frames = []
    backend.start(lambda stamp, rgb, overlay: frames.append((stamp, rgb, overlay)))
    try:
        _wait_for(lambda: len(frames) >= 2)
        stamp, rgb, overlay = frames[-1]
        assert rgb.shape == (224, 224, 3) and len(overlay["target"]) == 2 and overlay["throttle"] == 0.0
        assert rgb is not frames[-2][1]  # each frame is the page's own copy
        image = backend.label(Frame(stamp, rgb, overlay), -0.5, 0.5)
        backend.drive(0.1, 0.6, True, "web-1")
        _wait_for(lambda: backend.car_state()["speed"] > 0.3)
        backend.drive(0.0, 0.0, False, "web-1")
        assert backend.car_state()["throttle"] == 0.0
        backend.drive(0.1, 0.6, True, "web-1")
        backend.estop()
        assert backend.car_state()["throttle"] == 0.0 and backend.status()["estop"] is True
        backend.set_recording(True)
        _wait_for(lambda: backend.status()["session_samples"] >= 3)
        backend.set_recording(False)
        assert backend.undo() is not None
    finally:
        backend.stop()
    samples, corrupt = read_dataset(tmp_path / "data")
    assert corrupt == 0 and samples[0].image_path.name == image.split("/")[-1]
    assert samples[0].meta == {"source": "click", "stamp_ns": stamp, "track_seed": 3}
    assert (samples[0].x, samples[0].y) == (-0.5, 0.5)
    assert {s.meta["source"] for s in samples[1:]} == {"record"} and len(samples) >= 2


def test_sim_backend_status_has_its_latencies_from_capture(tmp_path):
    from jetracer_trt.web.sim_backend import SimBackend

    backend = SimBackend(tmp_path / "data", track_seed=3)
    assert backend.status()["latency_ms"] == {"capture_to_command": None, "capture_to_web": None}
    backend.start(lambda stamp, rgb, overlay: time.sleep(0.004))  # a page that takes 4 ms to take a frame
    try:
        _wait_for(lambda: backend.status()["latency_ms"]["capture_to_command"] is not None)
        time.sleep(0.2)
        latency = backend.status()["latency_ms"]
    finally:
        backend.stop()
    # capture is when rendering starts: the frame reaches the page after rendering, the command is applied after
    # the page has taken the frame
    assert 0 < latency["capture_to_web"] < 200
    assert latency["capture_to_web"] + 3.5 < latency["capture_to_command"] < 300
    json.dumps(backend.status())


def _wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_main_reports_a_bad_port_in_one_line(tmp_path, capsys):
    from jetracer_trt.web.__main__ import main

    assert main(["--data", str(tmp_path / "data"), "--web-port", "70000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: web port must be an integer in 0..65535")
