"""The car's web page: live view, click to label, undo, a virtual joystick, e-stop and record toggle; ROS-free.

``WebApp`` serves one page (``page.html``, shipped with the package) and a small JSON/WebSocket API from its own
thread and asyncio loop (aiohttp), so a host (the collection node next to rclpy's spin, or the simulator backend in
``sim_backend.py``) starts it beside its own work. The host pushes camera frames with ``show_frame`` and implements
``Backend``: the app calls it to store a label, undo, drive, stop and toggle recording.

- **Live view**: each client asks for a frame when it has shown the previous one (one frame in flight per client,
  so a slow phone gets fewer frames, never old ones). A frame is JPEG-encoded once, however many clients watch it,
  and travels with its stamp, its overlay (predicted target, commanded steering) and the status; the page draws
  the overlay on a canvas over the image, so the image itself stays the camera's pixels.
- **Click to label**: the page sends the stamp of the frame it shows and the click in that frame's pixels; the app
  finds the frame in a ring of recent ones (``ring_frames``) and maps pixel (u, v) of a W x H frame to
  ``x = 2u/W - 1, y = 2v/H - 1``. (u, v) is a continuous position, the image spanning [0, W] x [0, H] (pixel i covers
  [i, i + 1)), the convention of the simulator's labels (``sim.camera.image_to_label``) and JetRacer's notebooks.
- **Joystick**: one client drives at a time: the first to hold the stick keeps it until it lets go, closes the page
  or goes quiet for ``drive_timeout_s``; every one of those ends with a zero command (held=False) to the backend.
- **Security**: binds to 127.0.0.1 by default. Any other address needs a token (``new_token()``), checked in constant
  time on every request (``?token=`` or the ``X-Token`` header). Without a token only loopback Host headers are
  served (a web site the user visits cannot reach the page through DNS rebinding), and a cross-origin request is
  refused (WebSockets are not bound by CORS). Bodies and WebSocket messages are size-limited, and no URL maps to a
  file: the page is one packaged file and the dataset is reached only through the backend and ``browse.py``.
- **Dataset browser**: pages of the dataset's samples, newest first, as thumbnails with their label drawn
  (``/api/dataset``, ``/api/dataset/image``), and a delete that goes through the backend (a tombstone, as undo);
  samples are named by their image as the index names it, looked up among the live samples, never opened by name.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import ipaddress
import itertools
import json
import logging
import math
import secrets
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from ..dataset import DatasetWriteError
from ..errors import JetracerError
from .browse import MAX_PER_PAGE, DatasetBrowser, UnknownSample, check_sample_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024  # every request is a small JSON object
MAX_WS_MESSAGE_BYTES = 4096
STATUS_EVERY_S = 0.5  # a client waiting for a frame gets the status this often, so it sees a dead camera
JPEG_QUALITY = 80
MAX_PAGE_NUMBER = 10_000_000
THUMBNAIL_CACHE = "private, max-age=3600"  # an image name is never given to another frame


@dataclass(frozen=True)
class Frame:
    """A camera frame as the page shows it: ``stamp_ns`` identifies it (a click names it), ``rgb`` is (H, W, 3)
    uint8 and belongs to the app from ``show_frame`` on, ``overlay`` is drawn over it (see ``WebApp.show_frame``)."""

    stamp_ns: int
    rgb: np.ndarray
    overlay: dict = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


class Backend(Protocol):
    """What the host does for the page. ``drive``, ``estop`` and ``status`` are called on the app's event-loop
    thread and must return at once; ``label``, ``undo`` and ``set_recording`` on one worker thread, in order. A
    ``JetracerError`` they raise is shown to the user (``DatasetWriteError``, a full disk: HTTP 507)."""

    def label(self, frame: Frame, x: float, y: float) -> str:
        """Stores ``frame`` with the road target (x, y) in [-1, 1]; returns the sample's image name."""

    def undo(self) -> str | None:
        """Removes this session's newest sample; returns its image name, or None when there is none."""

    def drive(self, steering: float, throttle: float, held: bool, client_id: str) -> None:
        """The joystick, in [-1, 1]; ``held`` False (released, timed out, page closed) means stop now."""

    def estop(self) -> None:
        """Emergency stop (latched by the host)."""

    def set_recording(self, on: bool) -> None:
        """Starts or stops recording."""

    def delete(self, image: str) -> None:
        """Removes the sample of ``image`` (an index's image name, a live sample of the dataset) for good."""

    def dataset_root(self):
        """The dataset folder the page browses (str or Path); it may not exist yet."""

    def status(self) -> dict:
        """JSON-serialisable; the page shows ``mode``, ``session_samples``, ``recording``, ``error`` (e.g. a full
        disk), ``estop`` and ``latency_ms`` when present: {name: milliseconds or None (not measured yet)}, each a
        latency from a frame's capture the backend measures (``capture_to_command``: to the command made with
        that frame; ``capture_to_web``: to the frame handed to the page)."""


def new_token() -> str:
    """A fresh random access token (printed by the host, typed or scanned into the phone's browser once)."""
    return secrets.token_urlsafe(16)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def label_from_pixel(u: float, v: float, width: int, height: int) -> tuple[float, float]:
    """Continuous pixel position (u, v) in a ``width`` x ``height`` image -> the label (x, y) in [-1, 1]."""
    return 2.0 * u / width - 1.0, 2.0 * v / height - 1.0


class _Client:
    """One open page: its WebSocket and the stamp of the last frame it was sent."""

    _ids = itertools.count(1)

    def __init__(self, ws: web.WebSocketResponse):
        self.id = f"web-{next(self._ids)}"
        self.ws = ws
        self.last_stamp: int | None = None


class WebApp:
    """Serves the page for ``backend`` on ``host``:``port`` (0: any free port) from its own thread.

    ``start()`` returns once the port is bound (raising JetracerError if it cannot be); ``url`` is then the address
    to open, token included. ``stop()`` releases the joystick (a zero command) and closes every connection.
    """

    def __init__(self, backend: Backend, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 ring_frames: int = 30, drive_timeout_s: float = 0.3):
        if not is_loopback(host) and not token:
            raise JetracerError(f"web host {host} serves the page beyond this machine, so it needs a token "
                                "(new_token(), printed at start); or keep the default 127.0.0.1")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise JetracerError(f"web port must be an integer in 0..65535, got {port!r}")
        self.backend = backend
        self.host = host
        self.port = port
        self.token = token
        self.drive_timeout_s = float(drive_timeout_s)
        self._page = _read_page()
        self._ring: collections.OrderedDict[int, Frame] = collections.OrderedDict()
        self._ring_frames = int(ring_frames)
        self._latest: Frame | None = None
        self._jpeg: tuple[int, asyncio.Future] | None = None  # (stamp, encoding of the latest frame)
        self._new_frame: asyncio.Event | None = None
        self._clients: dict[str, _Client] = {}
        self._driver: str | None = None
        self._driver_heard = 0.0
        self._dataset_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-dataset")
        # the dataset browser's reads and thumbnails: two threads, so a page of thumbnails leaves the live view's
        # JPEG encoding (the loop's default executor) a core on a 2-core car
        self._browse_worker = ThreadPoolExecutor(max_workers=2, thread_name_prefix="web-browse")
        self._browser = DatasetBrowser(backend.dataset_root())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    # -- the host's side ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{shown}:{self.port}/{query}"

    def start(self) -> "WebApp":
        if self._thread is not None:
            raise JetracerError("this WebApp was started already")
        self._thread = threading.Thread(target=self._run, name="web-app", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            raise JetracerError(f"cannot serve the web page on {self.host}:{self.port}: {self._start_error}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(self._stopping.set)
            thread.join(timeout=5)
        self._dataset_worker.shutdown(wait=True)
        self._browse_worker.shutdown(wait=True)

    def show_frame(self, stamp_ns: int, rgb: np.ndarray, overlay: dict | None = None) -> None:
        """Hands the page a new camera frame; thread-safe and cheap (no copy, no encoding here).

        ``rgb`` must not be written to afterwards. ``overlay``: ``target`` [x, y] (the predicted road target, label
        coordinates) or None, ``steering`` and ``throttle`` (the command), any other JSON values.
        """
        loop = self._loop
        if loop is not None and not loop.is_closed():
            frame = Frame(int(stamp_ns), rgb, dict(overlay or {}))
            with contextlib.suppress(RuntimeError):  # the loop closed in between: nobody is watching any more
                loop.call_soon_threadsafe(self._add_frame, frame)

    def __enter__(self) -> "WebApp":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- the loop ---------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 -- reported to start(), or logged after it returned
            if not self._started.is_set():
                self._start_error = exc
            else:
                log.error("web page stopped: %s", exc)
        finally:
            self._started.set()
            loop.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._new_frame = asyncio.Event()
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        app.router.add_get("/", self._page_handler)
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/api/status", self._status_handler)
        app.router.add_post("/api/label", self._label_handler)
        app.router.add_post("/api/undo", self._undo_handler)
        app.router.add_post("/api/record", self._record_handler)
        app.router.add_post("/api/estop", self._estop_handler)
        app.router.add_get("/api/dataset", self._dataset_page_handler)
        app.router.add_get("/api/dataset/image", self._thumbnail_handler)
        app.router.add_post("/api/dataset/delete", self._delete_handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = runner.addresses[0][1]
            self._started.set()
            log.info("web page at %s", self.url)
            watchdog = asyncio.ensure_future(self._drive_watchdog())
            await self._stopping.wait()
            watchdog.cancel()
            self._release_stick()
            for client in list(self._clients.values()):
                await client.ws.close()
        finally:
            await runner.cleanup()

    def _add_frame(self, frame: Frame) -> None:
        self._latest = frame
        self._ring[frame.stamp_ns] = frame
        self._ring.move_to_end(frame.stamp_ns)
        while len(self._ring) > self._ring_frames:
            self._ring.popitem(last=False)
        self._new_frame.set()
        self._new_frame = asyncio.Event()

    async def _jpeg_of(self, frame: Frame) -> bytes:
        """The frame as JPEG, encoded once on a worker thread whatever the number of clients."""
        if self._jpeg is None or self._jpeg[0] != frame.stamp_ns:
            future = asyncio.get_running_loop().run_in_executor(None, _encode_jpeg, frame.rgb)
            self._jpeg = (frame.stamp_ns, future)
        return await asyncio.shield(self._jpeg[1])

    # -- security -------------------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler):
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            response = await handler(request)
        except _Refused as exc:
            response = _error(exc.status, str(exc))
        if not response.prepared:  # a WebSocket is already on the wire
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers["X-Frame-Options"] = "DENY"  # no clickjacking of the joystick from a framing page
            response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
            response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the page's URL
        return response

    def _refusal(self, request: web.Request) -> web.Response | None:
        if self.token:
            given = request.headers.get("X-Token") or request.query.get("token")
            if not given:
                return _error(401, "this page needs its token: open the URL the car printed at start")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _error(403, "wrong token: open the URL the car printed at start")
        elif not is_loopback(_hostname(request.host)):
            return _error(403, f"Host {request.host!r} is not this machine; open {self.url}")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            return _error(403, "requests from other web sites are refused")
        return None

    # -- HTTP -----------------------------------------------------------------------------------------------------
    async def _page_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    async def _status_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self._status(None), dumps=_dumps)

    async def _label_handler(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        stamp, u, v = _stamp(body.get("stamp_ns")), body.get("u"), body.get("v")
        if stamp is None or not (_is_number(u) and _is_number(v)):
            raise _Refused(400, "a label needs stamp_ns (the frame's stamp) and u, v (pixels of that frame)")
        frame = self._ring.get(stamp)
        if frame is None:
            raise _Refused(409, "that frame is no longer in memory (clicked too late?); click the live image again")
        if not (0.0 <= u <= frame.width and 0.0 <= v <= frame.height):
            raise _Refused(400, f"click ({u}, {v}) is outside the {frame.width}x{frame.height} frame")
        x, y = label_from_pixel(u, v, frame.width, frame.height)
        image = await self._dataset_call(self.backend.label, frame, x, y)
        return web.json_response({"image": image, "x": x, "y": y, "stamp_ns": str(stamp)})

    async def _undo_handler(self, request: web.Request) -> web.Response:
        return web.json_response({"removed": await self._dataset_call(self.backend.undo)})

    async def _record_handler(self, request: web.Request) -> web.Response:
        on = (await _json_body(request)).get("on")
        if not isinstance(on, bool):
            raise _Refused(400, "record needs {\"on\": true|false}")
        await self._dataset_call(self.backend.set_recording, on)
        return web.json_response({"recording": on})

    async def _estop_handler(self, request: web.Request) -> web.Response:
        self.backend.estop()
        self._release_stick()
        log.warning("e-stop from the web page (%s)", request.remote)
        return web.json_response({"estop": True})

    async def _dataset_page_handler(self, request: web.Request) -> web.Response:
        page = _query_int(request, "page", 0, 0, MAX_PAGE_NUMBER)
        per_page = _query_int(request, "per_page", 12, 1, MAX_PER_PAGE)
        return web.json_response(await self._browse_call(self._browser.page, page, per_page), dumps=_dumps)

    async def _thumbnail_handler(self, request: web.Request) -> web.Response:
        image = _sample_id(request.query.get("id"))
        jpeg = await self._browse_call(self._browser.thumbnail, image)
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": THUMBNAIL_CACHE})

    async def _delete_handler(self, request: web.Request) -> web.Response:
        image = _sample_id((await _json_body(request)).get("id"))
        await self._browse_call(self._browser.sample, image)  # a live sample of this dataset, or 404
        await self._dataset_call(self.backend.delete, image)
        log.info("sample %s deleted from the web page (%s)", image, request.remote)
        return web.json_response({"deleted": image})

    async def _browse_call(self, method, *args):
        return await _run_on(self._browse_worker, method, *args)

    async def _dataset_call(self, method, *args):
        return await _run_on(self._dataset_worker, method, *args)

    def _status(self, client_id: str | None) -> dict:
        status = dict(self.backend.status())
        status["driver"] = None if self._driver is None else ("you" if self._driver == client_id else "other")
        status["clients"] = len(self._clients)
        return status

    # -- WebSocket: frames out, joystick in -----------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_WS_MESSAGE_BYTES, heartbeat=5.0)
        await ws.prepare(request)
        client = _Client(ws)
        self._clients[client.id] = client
        sender: asyncio.Future | None = None
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    break
                try:
                    command = json.loads(message.data)
                except ValueError:
                    break
                kind = command.get("type") if isinstance(command, dict) else None
                if kind == "next":  # the page has shown its last frame: send the next one (or a status)
                    if sender is None or sender.done():
                        sender = asyncio.ensure_future(self._send_next(client))
                elif kind == "drive":
                    await self._on_drive(client, command)
                else:
                    break  # not our page: drop it
        finally:
            if sender is not None:
                sender.cancel()
            self._clients.pop(client.id, None)
            if self._driver == client.id:
                self._release_stick()
        return ws

    async def _send_next(self, client: _Client) -> None:
        frame = self._latest
        if frame is None or frame.stamp_ns == client.last_stamp:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new_frame.wait(), STATUS_EVERY_S)
            frame = self._latest
        with contextlib.suppress(ConnectionError, RuntimeError):  # the page went away meanwhile
            if frame is None or frame.stamp_ns == client.last_stamp:
                await client.ws.send_json({"type": "status", "status": self._status(client.id)}, dumps=_dumps)
                return
            try:
                jpeg = await self._jpeg_of(frame)
            except JetracerError as exc:  # the page still gets its reply, so it keeps asking
                log.error("live view: %s", exc)
                client.last_stamp = frame.stamp_ns
                await client.ws.send_json({"type": "status", "status": self._status(client.id)}, dumps=_dumps)
                return
            # the stamp as a string: JavaScript numbers hold 53 bits, a nanosecond stamp needs 61
            header = _dumps({"type": "frame", "stamp_ns": str(frame.stamp_ns), "width": frame.width,
                             "height": frame.height, "overlay": frame.overlay,
                             "sent_ns": time.time_ns(), "status": self._status(client.id)}).encode()
            client.last_stamp = frame.stamp_ns
            await client.ws.send_bytes(struct.pack(">I", len(header)) + header + jpeg)

    async def _on_drive(self, client: _Client, command: dict) -> None:
        steering, throttle, held = command.get("steering"), command.get("throttle"), command.get("held")
        if not (_is_number(steering) and _is_number(throttle) and isinstance(held, bool)):
            await client.ws.send_json({"type": "drive", "ok": False, "reason": "bad joystick message"})
            return
        if self._driver not in (None, client.id):
            if held:
                await client.ws.send_json({"type": "drive", "ok": False, "reason": "another client is driving"})
            return
        if not held:
            if self._driver == client.id:
                self._release_stick()
            return
        self._driver, self._driver_heard = client.id, time.monotonic()
        self.backend.drive(_clip(steering), _clip(throttle), True, client.id)

    def _release_stick(self) -> None:
        """Zero command to the backend for the client holding the stick, who no longer does."""
        driver, self._driver = self._driver, None
        if driver is not None:
            self.backend.drive(0.0, 0.0, False, driver)

    async def _drive_watchdog(self) -> None:
        """A driver whose page went quiet (a phone locked, Wi-Fi lost) has let go."""
        while True:
            await asyncio.sleep(self.drive_timeout_s / 4)
            if self._driver is not None and time.monotonic() - self._driver_heard > self.drive_timeout_s:
                log.warning("web joystick of %s silent for %.1f s: stopping", self._driver, self.drive_timeout_s)
                self._release_stick()


def _read_page() -> bytes:
    try:
        return resources.files(__package__).joinpath("page.html").read_bytes()
    except OSError as exc:
        raise JetracerError(f"the web page's file is missing from the installed package ({exc}); reinstall "
                            "jetracer_trt") from None


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise JetracerError(f"could not encode a {rgb.shape} frame as JPEG")
    return jpeg.tobytes()


def _hostname(host_header: str | None) -> str:
    host = urlsplit(f"//{host_header or ''}").hostname
    return host or ""


def _plain(value):
    """numpy values (a host's overlay or status is often made of them) as plain JSON; anything else as text."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)


_dumps = functools.partial(json.dumps, default=_plain)


def _stamp(value) -> int | None:
    """A frame stamp from a request: the decimal string the page was sent (or a plain integer), else None."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _clip(value: float) -> float:
    return min(1.0, max(-1.0, float(value)))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _Refused(Exception):
    """A request the app answers with ``status`` and ``{"error": message}`` (raised by handlers, answered by
    the middleware)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def _run_on(worker: ThreadPoolExecutor, method, *args):
    """``method(*args)`` on ``worker``; its JetracerError answered: a sample not in the dataset 404, a disk error
    507, any other 400."""
    try:
        return await asyncio.get_running_loop().run_in_executor(worker, method, *args)
    except UnknownSample as exc:
        raise _Refused(404, str(exc)) from None
    except DatasetWriteError as exc:
        raise _Refused(507, str(exc)) from None
    except JetracerError as exc:
        raise _Refused(400, str(exc)) from None


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9 and low <= int(text) <= high):
        raise _Refused(400, f"{name} must be an integer in {low}..{high}, got {text[:20]!r}")
    return int(text)


def _sample_id(value) -> str:
    try:
        return check_sample_id(value)
    except JetracerError as exc:
        raise _Refused(400, str(exc)) from None


async def _json_body(request: web.Request) -> dict:
    if request.content_type != "application/json":
        raise _Refused(415, "send JSON (Content-Type: application/json)")
    try:
        body = await request.json()
    except ValueError:
        raise _Refused(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "the request body must be a JSON object")
    return body
