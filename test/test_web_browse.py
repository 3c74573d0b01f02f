"""The web page's dataset browser without a browser: pages newest first, thumbnails with the label drawn, delete by
tombstone through the backend, ids that never become paths, bounded requests."""
from __future__ import annotations

import http.client
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="the web page needs the web extra: pip install -e '.[web]'")

from jetracer_trt import dataset as dataset_module  # noqa: E402
from jetracer_trt.dataset import DatasetWriteError, DatasetWriter, read_dataset, scan_dataset  # noqa: E402
from jetracer_trt.errors import JetracerError  # noqa: E402
from jetracer_trt.web import WebApp  # noqa: E402
from jetracer_trt.web import browse as browse_module  # noqa: E402
from jetracer_trt.web.browse import DatasetBrowser, UnknownSample, check_sample_id  # noqa: E402
from jetracer_trt.web.sim_backend import SimBackend  # noqa: E402


def _dataset(root, n, frame_value=60):
    """``n`` samples with x = -1 + k / n (k = 0 .. n-1, oldest first); returns their image names."""
    frame = np.full((224, 224, 3), frame_value, np.uint8)
    with DatasetWriter(root) as writer:
        return [writer.append(frame, -1 + k / n, 0.25, source="click", mode="manual", session="s1")
                for k in range(n)]


def test_pages_are_newest_first_with_counts(tmp_path):
    names = _dataset(tmp_path / "d", 25)
    browser = DatasetBrowser(tmp_path / "d")
    first = browser.page(0, 10)
    assert (first["total"], first["pages"], first["page"], first["per_page"]) == (25, 3, 0, 10)
    assert [s["id"] for s in first["samples"]] == names[::-1][:10]
    assert first["samples"][0] == {"id": names[-1], "x": -1 + 24 / 25, "y": 0.25, "source": "click",
                                   "mode": "manual", "session": "s1"}
    last = browser.page(2, 10)
    assert [s["id"] for s in last["samples"]] == names[4::-1]
    assert browser.page(99, 10)["page"] == 2  # past the end (the list shrank): the last page
    for page, per_page in ((0, 0), (0, browse_module.MAX_PER_PAGE + 1), (-1, 10)):
        with pytest.raises(JetracerError):
            browser.page(page, per_page)


def test_deleted_samples_are_gone_from_every_page(tmp_path):
    names = _dataset(tmp_path / "d", 5)
    browser = DatasetBrowser(tmp_path / "d")
    assert browser.page(0, 10)["total"] == 5
    with DatasetWriter(tmp_path / "d") as writer:
        writer.remove(names[2])
    page = browser.page(0, 10)
    assert names[2] not in [s["id"] for s in page["samples"]] and (page["total"], page["removed"]) == (4, 1)
    with pytest.raises(UnknownSample):
        browser.sample(names[2])
    with pytest.raises(UnknownSample):
        browser.thumbnail(names[2])


def test_the_index_is_read_again_only_when_it_changed(tmp_path, monkeypatch):
    _dataset(tmp_path / "d", 3)
    scans = []
    monkeypatch.setattr(browse_module, "scan_dataset", lambda root: scans.append(root) or scan_dataset(root))
    browser = DatasetBrowser(tmp_path / "d")
    for _ in range(3):
        browser.page(0, 10)
    assert len(scans) == 1
    _dataset(tmp_path / "d", 1)
    assert browser.page(0, 10)["total"] == 4 and len(scans) == 2


def test_a_thumbnail_has_the_target_drawn_where_the_label_is(tmp_path):
    (name,) = _dataset(tmp_path / "d", 1)  # x = -1, y = 0.25
    with DatasetWriter(tmp_path / "d") as writer:
        name = writer.append(np.full((224, 224, 3), 60, np.uint8), 0.5, -0.5)
    tile = cv2.imdecode(np.frombuffer(DatasetBrowser(tmp_path / "d").thumbnail(name), np.uint8), cv2.IMREAD_COLOR)
    size = browse_module.THUMBNAIL_PX
    assert tile.shape == (size, size, 3)
    u, v = round((0.5 + 1) / 2 * size), round((-0.5 + 1) / 2 * size)
    b, g, r = tile[v, u].astype(int)
    assert g > 200 and b < 80 and r < 80  # the green target dot
    b, g, r = tile[size // 2 + 20, 20].astype(int)
    assert abs(g - 60) < 10 and abs(r - 60) < 10  # the frame itself elsewhere


@pytest.mark.parametrize("bad", ["", "../dataset.json", "images/../../etc/passwd", "/etc/passwd", "images/a b.jpg",
                                 "images/..", "images//x.jpg", "a" * 201, "images\\x.jpg", 5, None, ["images/x"],
                                 "images/%2e%2e/x.jpg", "images/x.jpg\n"])
def test_ids_that_are_not_an_index_image_name_are_refused(bad):
    with pytest.raises(JetracerError, match="sample id"):
        check_sample_id(bad)


def test_only_live_samples_of_the_index_are_served(tmp_path):
    names = _dataset(tmp_path / "d", 1)
    (tmp_path / "d" / "images" / "stray_000000.jpg").write_bytes((tmp_path / "d" / names[0]).read_bytes())
    browser = DatasetBrowser(tmp_path / "d")
    for name in ("images/stray_000000.jpg", "dataset.json", "index.jsonl"):  # files there, but no samples
        with pytest.raises(UnknownSample):
            browser.thumbnail(name)
    assert browser.thumbnail(names[0])[:3] == b"\xff\xd8\xff"


def test_an_image_linked_from_outside_the_dataset_is_not_served(tmp_path):
    (name,) = _dataset(tmp_path / "d", 1)
    outside = tmp_path / "secret.jpg"
    outside.write_bytes((tmp_path / "d" / name).read_bytes())
    (tmp_path / "d" / name).unlink()
    (tmp_path / "d" / name).symlink_to(outside)
    with pytest.raises(UnknownSample, match="outside the dataset"):
        DatasetBrowser(tmp_path / "d").thumbnail(name)


# --- through the app -------------------------------------------------------------------------------------------


def _serve(root):
    """(app, backend, the dataset's image names oldest first): 30 samples, a simulator backend not stepping."""
    names = _dataset(root, 30)
    backend = SimBackend(root)
    with WebApp(backend, port=0) as app:
        yield app, backend, names
    backend.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``_serve`` once for the tests that change nothing."""
    yield from _serve(tmp_path_factory.mktemp("browse") / "d")


@pytest.fixture
def served_to_change(tmp_path):
    yield from _serve(tmp_path / "d")


def _request(app, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=5)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(raw), response
    return response.status, raw, response


def test_the_app_serves_pages_and_thumbnails(served):
    app, _, names = served
    status, page, _ = _request(app, "GET", "/api/dataset?page=1&per_page=12")
    assert status == 200 and page["total"] == 30 and page["pages"] == 3
    assert [s["id"] for s in page["samples"]] == names[::-1][12:24]
    status, page, _ = _request(app, "GET", "/api/dataset")  # defaults: the newest 12
    assert status == 200 and page["page"] == 0 and len(page["samples"]) == 12
    status, jpeg, response = _request(app, "GET", "/api/dataset/image?id=" + names[0])
    assert status == 200 and jpeg[:3] == b"\xff\xd8\xff" and response.getheader("Content-Type") == "image/jpeg"
    assert "max-age" in response.getheader("Cache-Control")  # an image name never changes its frame


@pytest.mark.parametrize("query", ["page=-1", "page=x", "page=1e3", "per_page=0", "per_page=61", "per_page=%C2%B2",
                                   "page=99999999999999999999"])
def test_bad_page_requests_are_refused(served, query):
    app, _, _ = served
    status, reply, _ = _request(app, "GET", "/api/dataset?" + query)
    assert status == 400 and "must be an integer" in reply["error"]


@pytest.mark.parametrize("image_id", ["../dataset.json", "..%2Fdataset.json", "index.jsonl", "dataset.json",
                                      "%2Fetc%2Fpasswd", "images/..%2F..%2Fetc%2Fpasswd", ""])
def test_no_sample_id_reaches_a_file(served, image_id):
    app, _, _ = served
    status, reply, _ = _request(app, "GET", "/api/dataset/image?id=" + image_id)
    assert status in (400, 404) and "error" in reply


def test_delete_goes_through_the_backend_as_a_tombstone(served_to_change):
    app, backend, names = served_to_change
    status, reply, _ = _request(app, "POST", "/api/dataset/delete", {"id": names[5]})
    assert (status, reply) == (200, {"deleted": names[5]})
    samples, _ = read_dataset(backend.dataset_root())
    assert names[5] not in [s.image_path.relative_to(backend.dataset_root()).as_posix() for s in samples]
    assert len(samples) == 29 and not (backend.dataset_root() / names[5]).exists()
    _, page, _ = _request(app, "GET", "/api/dataset?per_page=60")
    assert page["total"] == 29 and page["removed"] == 1 and names[5] not in [s["id"] for s in page["samples"]]
    # deleted already, never a sample, not an id: nothing written
    lines = (backend.dataset_root() / dataset_module.INDEX_NAME).read_bytes().count(b"\n")
    assert _request(app, "POST", "/api/dataset/delete", {"id": names[5]})[0] == 404
    assert _request(app, "POST", "/api/dataset/delete", {"id": "images/nope_000000.jpg"})[0] == 404
    assert _request(app, "POST", "/api/dataset/delete", {"id": "../dataset.json"})[0] == 400
    assert _request(app, "POST", "/api/dataset/delete", {"ids": [names[6]]})[0] == 400
    assert _request(app, "POST", "/api/dataset/delete", {"id": "x" * 20_000})[0] == 413
    assert (backend.dataset_root() / dataset_module.INDEX_NAME).read_bytes().count(b"\n") == lines


def test_a_dataset_that_is_not_there_yet_is_one_clear_error(tmp_path):
    backend = SimBackend(tmp_path / "d")
    (tmp_path / "d" / "index.jsonl").unlink()
    (tmp_path / "d" / "dataset.json").unlink()
    with WebApp(backend, port=0) as app:
        status, reply, _ = _request(app, "GET", "/api/dataset")
    backend.stop()
    assert status == 400 and "not a jetracer_trt dataset" in reply["error"]


def test_a_delete_the_disk_refuses_is_reported_and_the_sample_stays(served_to_change, monkeypatch):
    app, backend, names = served_to_change

    def full_disk(image):
        raise DatasetWriteError("cannot write to dataset d: No space left on device; the sample is still in the "
                                "dataset", 28)

    monkeypatch.setattr(backend, "delete", full_disk)
    status, reply, _ = _request(app, "POST", "/api/dataset/delete", {"id": names[0]})
    assert status == 507 and "No space left" in reply["error"]
    assert len(read_dataset(backend.dataset_root())[0]) == 30
