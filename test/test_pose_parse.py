"""The pose parser: the same peaks, scores, links and people as trt_pose's own parser (its C++ plugins, transcribed
below as plain loops for reference), correct on hand-made maps with known answers, and fast; the topology file."""
import json
import subprocess
import sys
import time
from collections import deque

import numpy as np
import pytest
import torch

from jetracer_trt.errors import JetracerError
from jetracer_trt.pose import (
    assign_links,
    best_assignment,
    connect_parts,
    find_peaks,
    load_topology,
    paf_score_graph,
    parse_objects,
    parse_people,
    people_from_objects,
    refine_peaks,
)
from jetracer_trt.pose.synthetic import draw_maps, people_in_a_row

TOPOLOGY = load_topology()
F32 = np.float32


# ---------------------------------------------------------------------------------------------------------------
# Test reference: trt_pose's parser plugins (trt_pose/parse/{find_peaks,refine_peaks,paf_score_graph,munkres,
# connect_parts}.cpp, NVIDIA-AI-IOT/trt_pose, MIT licence) transcribed as plain loops over float32 scalars, in the
# plugins' order of operations. Slow, and only for comparing against.
# ---------------------------------------------------------------------------------------------------------------

def reference_find_peaks(cmap, threshold, window, max_count):
    n_images, n_parts, h, w = cmap.shape
    win = window // 2
    threshold = F32(threshold)
    counts = np.zeros((n_images, n_parts), dtype=np.int32)
    peaks = np.zeros((n_images, n_parts, max_count, 2), dtype=np.int32)
    for n in range(n_images):
        for c in range(n_parts):
            plane = cmap[n, c]
            count = 0
            for i in range(h):
                for j in range(w):
                    if count >= max_count:
                        break
                    value = plane[i, j]
                    if value < threshold:
                        continue
                    is_peak = True
                    for ii in range(max(i - win, 0), min(i + win + 1, h)):
                        for jj in range(max(j - win, 0), min(j + win + 1, w)):
                            if plane[ii, jj] > value:
                                is_peak = False
                    if is_peak:
                        peaks[n, c, count] = (i, j)
                        count += 1
            counts[n, c] = count
    return counts, peaks


def _reflect(index, size):
    if index < 0:
        return -index
    if index >= size:
        return size - (index - size) - 2
    return index


def reference_refine_peaks(counts, peaks, cmap, window):
    n_images, n_parts, h, w = cmap.shape
    win = window // 2
    refined = np.zeros(peaks.shape, dtype=F32)
    for n in range(n_images):
        for c in range(n_parts):
            for m in range(counts[n, c]):
                i, j = peaks[n, c, m]
                y, x, weight_sum = F32(0), F32(0), F32(0)
                for ii in range(i - win, i + win + 1):
                    for jj in range(j - win, j + win + 1):
                        weight = cmap[n, c, _reflect(ii, h), _reflect(jj, w)]
                        y = F32(y + weight * F32(ii))
                        x = F32(x + weight * F32(jj))
                        weight_sum = F32(weight_sum + weight)
                with np.errstate(divide="ignore", invalid="ignore"):
                    y, x = y / weight_sum, x / weight_sum
                y, x = F32(float(y) + 0.5), F32(float(x) + 0.5)  # a C double 0.5 added to a float
                refined[n, c, m] = (y / F32(h), x / F32(w))
    return refined


def reference_paf_score_graph(paf, links, counts, peaks, samples):
    n_images, _, h, w = paf.shape
    m_slots = peaks.shape[2]
    scores = np.zeros((n_images, len(links), m_slots, m_slots), dtype=F32)
    for n in range(n_images):
        for k, (paf_i, paf_j, part_a, part_b) in enumerate(links):
            for a in range(counts[n, part_a]):
                a_i, a_j = peaks[n, part_a, a, 0] * F32(h), peaks[n, part_a, a, 1] * F32(w)
                for b in range(counts[n, part_b]):
                    b_i, b_j = peaks[n, part_b, b, 0] * F32(h), peaks[n, part_b, b, 1] * F32(w)
                    ab_i, ab_j = F32(b_i - a_i), F32(b_j - a_j)
                    norm = F32(float(np.sqrt(F32(ab_i * ab_i + ab_j * ab_j))) + 1e-5)  # + a C double EPS
                    u_i, u_j = ab_i / norm, ab_j / norm
                    integral = F32(0)
                    for t in range(samples):
                        with np.errstate(divide="ignore", invalid="ignore"):
                            progress = F32(t) / (F32(samples) - F32(1))
                        t_i, t_j = F32(a_i + progress * ab_i), F32(a_j + progress * ab_j)
                        if not (np.isfinite(t_i) and np.isfinite(t_j)):
                            continue  # (int)NaN is INT_MIN on x86: out of bounds
                        ti, tj = int(t_i), int(t_j)  # C's (int): toward zero
                        if ti < 0 or ti >= h or tj < 0 or tj >= w:
                            continue
                        dot = F32(paf[n, paf_i, ti, tj] * u_i + paf[n, paf_j, ti, tj] * u_j)
                        integral = F32(integral + dot)
                    scores[n, k, a, b] = integral / F32(samples)
    return scores


def reference_munkres(cost):
    """trt_pose's ``_munkres`` on a float32 cost matrix: the column starred in each row (-1 for none)."""
    cost = np.array(cost, dtype=F32)
    n_rows, n_cols = cost.shape
    star_row, star_col = [-1] * n_rows, [-1] * n_cols
    prime_row = [-1] * n_rows
    row_cover, col_cover = [False] * n_rows, [False] * n_cols

    def uncovered(i, j):
        return not (row_cover[i] or col_cover[j])

    step = 0
    if n_cols >= n_rows:
        for i in range(n_rows):
            cost[i, :] -= cost[i, :].min()
    if n_cols > n_rows:
        step = 1
    while True:
        if step == 0:
            for j in range(n_cols):
                cost[:, j] -= cost[:, j].min()
        if step <= 1:
            for i in range(n_rows):
                for j in range(n_cols):
                    if star_row[i] < 0 and star_col[j] < 0 and cost[i, j] == 0:
                        star_row[i], star_col[j] = j, i
        if step <= 2:
            count = 0
            for j in range(n_cols):
                if star_col[j] >= 0:
                    col_cover[j] = True
                    count += 1
            if count >= min(n_rows, n_cols):
                return star_row
        if step <= 3:
            prime = None
            for i in range(n_rows):
                for j in range(n_cols):
                    if cost[i, j] == 0 and uncovered(i, j):
                        prime_row[i] = j
                        if star_row[i] >= 0:
                            row_cover[i] = True
                            col_cover[star_row[i]] = False
                        else:
                            prime = (i, j)
                            break
                if prime:
                    break
            if prime is None:
                step = 5
        if step <= 4:
            row, col = prime
            while star_col[col] >= 0:
                starred_row = star_col[col]
                star_row[starred_row], star_col[col] = -1, -1
                star_row[row], star_col[col] = col, row
                row, col = starred_row, prime_row[starred_row]
            star_row[row], star_col[col] = col, row
            row_cover[:], col_cover[:], prime_row[:] = [False] * n_rows, [False] * n_cols, [-1] * n_rows
            step = 2
            continue
        smallest = min(cost[i, j] for i in range(n_rows) for j in range(n_cols) if uncovered(i, j))
        for i in range(n_rows):
            if row_cover[i]:
                cost[i, :] += smallest
        for j in range(n_cols):
            if not col_cover[j]:
                cost[:, j] -= smallest
        step = 3


def reference_assignment(scores, links, counts, threshold):
    n_images, n_links, m_slots, _ = scores.shape
    connections = np.full((n_images, n_links, 2, m_slots), -1, dtype=np.int32)
    for n in range(n_images):
        for k, (_, _, part_a, part_b) in enumerate(links):
            graph = scores[n, k, :counts[n, part_a], :counts[n, part_b]]
            for i, j in enumerate(reference_munkres(-graph)):
                if j >= 0 and graph[i, j] > F32(threshold):
                    connections[n, k, 0, i], connections[n, k, 1, j] = j, i
    return connections


def reference_connect_parts(connections, links, counts, max_count):
    n_images, n_parts = counts.shape
    m_slots = connections.shape[3]
    object_counts = np.zeros(n_images, dtype=np.int32)
    objects = np.full((n_images, max_count, n_parts), -1, dtype=np.int32)
    for n in range(n_images):
        visited = np.zeros(n_parts * m_slots, dtype=bool)
        num = 0
        for c in range(n_parts):
            if num >= max_count:
                break
            for i in range(counts[n, c]):
                if num >= max_count:
                    break
                queue, new_object = deque([(c, i)]), False
                while queue:
                    c_n, i_n = queue.popleft()
                    if visited[c_n * m_slots + i_n]:
                        continue
                    visited[c_n * m_slots + i_n] = True
                    new_object = True
                    objects[n, num, c_n] = i_n
                    for k in range(len(links)):
                        c_a, c_b = links[k][2], links[k][3]
                        if c_a == c_n and connections[n, k, 0, i_n] >= 0:
                            queue.append((c_b, connections[n, k, 0, i_n]))
                        if c_b == c_n and connections[n, k, 1, i_n] >= 0:
                            queue.append((c_a, connections[n, k, 1, i_n]))
                if new_object:
                    num += 1
        object_counts[n] = num
    return object_counts, objects


def reference_parse_objects(cmap, paf, links, cmap_threshold=0.1, link_threshold=0.1, cmap_window=5,
                            line_integral_samples=7, max_num_parts=100, max_num_objects=100):
    """trt_pose's ``ParseObjects.__call__``."""
    counts, peaks = reference_find_peaks(cmap, cmap_threshold, cmap_window, max_num_parts)
    normalized = reference_refine_peaks(counts, peaks, cmap, cmap_window)
    scores = reference_paf_score_graph(paf, links, counts, normalized, line_integral_samples)
    connections = reference_assignment(scores, links, counts, link_threshold)
    object_counts, objects = reference_connect_parts(connections, links, counts, max_num_objects)
    return object_counts, objects, normalized


# ---------------------------------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------------------------------

def random_maps(seed, n_images=1, size=(32, 32), blobs=5):
    """Smooth random maps: per channel a few bumps of random height and width, some at the edges, plus noise;
    part affinity fields a smooth random field in about [-1, 1]."""
    rng = np.random.default_rng(seed)
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w]
    cmap = rng.normal(0, 0.02, (n_images, TOPOLOGY.num_keypoints, h, w))
    for n in range(n_images):
        for c in range(TOPOLOGY.num_keypoints):
            for _ in range(rng.integers(0, blobs + 1)):
                y, x = rng.choice([rng.uniform(0, h), rng.choice([0, h - 1])]), rng.uniform(-0.5, w - 0.5)
                cmap[n, c] += rng.uniform(0.05, 1) * np.exp(-((ys - y) ** 2 + (xs - x) ** 2) / rng.uniform(1, 8))
    coarse = rng.uniform(-1, 1, (n_images, TOPOLOGY.paf_channels, h // 8 + 1, w // 8 + 1))
    paf = np.kron(coarse, np.ones((8, 8)))[:, :, :h, :w] + rng.normal(0, 0.05, (n_images, TOPOLOGY.paf_channels, h, w))
    return cmap.astype(F32), paf.astype(F32)


def assert_same_parse(mine, reference):
    for got, expected, name in zip(mine, reference, ("object_counts", "objects", "normalized_peaks"), strict=True):
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name)


def matched(people_found, truth, tolerance):
    """For each true person, the index of the found person whose keypoints all lie within ``tolerance`` (normalised
    units) of theirs, present exactly where theirs are; asserts each is found once."""
    order = []
    for person in truth:
        hits = [p for p, found in enumerate(people_found)
                if np.array_equal(np.isnan(found[:, 0]), np.isnan(person[:, 0]))
                and np.nanmax(np.abs(found - person)) < tolerance]
        assert len(hits) == 1, (person, people_found)
        order.append(hits[0])
    assert sorted(order) == list(range(len(truth)))
    return order


def found_people(result, image=0):
    """The parser's people as (P, C, 2) normalised (x, y), NaN where missing."""
    object_counts, objects, peaks = result
    people = np.full((object_counts[image], TOPOLOGY.num_keypoints, 2), np.nan)
    for p in range(object_counts[image]):
        for c, index in enumerate(objects[image, p]):
            if index >= 0:
                people[p, c] = peaks[image, c, index, ::-1]
    return people


# ---------------------------------------------------------------------------------------------------------------
# The topology
# ---------------------------------------------------------------------------------------------------------------

def test_the_topology_is_trt_pose_human_pose_json():
    assert TOPOLOGY.num_keypoints == 18 and TOPOLOGY.num_links == 21 and TOPOLOGY.paf_channels == 42
    assert TOPOLOGY.keypoints[:3] == ("nose", "left_eye", "right_eye") and TOPOLOGY.keypoints[-1] == "neck"
    with open(TOPOLOGY.source) as f:
        category = json.load(f)
    # trt_pose.coco.coco_category_to_topology: row k = [2k, 2k + 1, a - 1, b - 1]
    expected = [[2 * k, 2 * k + 1, a - 1, b - 1] for k, (a, b) in enumerate(category["skeleton"])]
    assert TOPOLOGY.links.dtype == np.int32 and TOPOLOGY.links.tolist() == expected
    assert expected[0] == [0, 1, 15, 13] and expected[-1] == [40, 41, 17, 12]  # left ankle-knee ... neck-right hip


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"keypoints": [], "skeleton": [[1, 2]]}', "non-empty list of names"),
    ('{"keypoints": ["a", "b", "a"], "skeleton": [[1, 2]]}', "keypoint names repeat (a)"),
    ('{"keypoints": ["a", "b"], "skeleton": [[1, 3]]}', "outside 1..2"),
    ('{"keypoints": ["a", "b"], "skeleton": [[0, 1]]}', "numbered from 1"),
    ('{"keypoints": ["a", "b"], "skeleton": [[2, 2]]}', "to itself"),
    ('{"keypoints": ["a", "b"], "skeleton": [[1, "b"]]}', "not a pair of keypoint numbers"),
])
def test_a_bad_topology_file_is_refused_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "pose.json"
    path.write_text(content)
    with pytest.raises(JetracerError, match=str(path)) as error:
        load_topology(path)
    assert message in str(error.value)
    with pytest.raises(JetracerError, match="not found"):
        load_topology(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------------------
# Each stage against trt_pose's
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_peaks_and_refinement_are_trt_pose_s(seed):
    cmap, _ = random_maps(seed, n_images=2)
    cmap[0, 0, 5:7, 5:7] = 0.7  # a plateau: four equal pixels, all peaks
    cmap[0, 1, 0, 0] = cmap[0, 1, -1, -1] = 2.0  # corner peaks: the refinement mirrors its window there
    cmap[0, 2, 8:13, 8:13] = 0
    cmap[0, 2, 10, 10] = F32(0.1)  # exactly at the threshold: a peak
    for window, max_count in ((5, 100), (3, 100), (4, 2), (7, 100)):
        counts, peaks = find_peaks(cmap, 0.1, window, max_count)
        expected_counts, expected_peaks = reference_find_peaks(cmap, 0.1, window, max_count)
        np.testing.assert_array_equal(counts, expected_counts)
        np.testing.assert_array_equal(peaks, expected_peaks)
        refined = refine_peaks(counts, peaks, cmap, window)
        assert refined.dtype == np.float32 and refined.shape == (2, 18, max_count, 2)
        np.testing.assert_array_equal(refined, reference_refine_peaks(counts, peaks, cmap, window))
    assert counts[0, 0] >= 4 and (counts == 2).any()
    assert [10, 10] in find_peaks(cmap, 0.1, 5, 100)[1][0, 2].tolist()


@pytest.mark.parametrize("seed", range(4))
def test_link_scores_are_trt_pose_s(seed):
    cmap, paf = random_maps(seed)
    counts, peaks = find_peaks(cmap, 0.1, 5, 100)
    normalized = refine_peaks(counts, peaks, cmap, 5)[:, :, :12]
    normalized[0, 0, 0] = (-0.01, 1.02)  # a line that starts outside the map: its samples there count as zero
    for samples in (7, 2, 1):
        scores = paf_score_graph(paf, TOPOLOGY, counts, normalized, samples)
        expected = reference_paf_score_graph(paf, TOPOLOGY.links, counts, normalized, samples)
        np.testing.assert_array_equal(scores, expected)
    assert np.count_nonzero(scores) == 0  # a single sample is 0 / 0 of the way along: never read


def test_the_assignment_is_trt_pose_s_munkres_ties_included():
    rng = np.random.default_rng(7)
    for trial in range(800):
        rows, cols = rng.integers(1, 9, size=2)
        if trial % 2:
            scores = rng.uniform(-0.5, 1, (rows, cols)).astype(F32)
        else:  # three values only: many ties, which go trt_pose's way too
            scores = (rng.integers(0, 3, (rows, cols)) / 2).astype(F32)
        assert best_assignment(scores) == [(i, j) for i, j in enumerate(reference_munkres(-scores)) if j >= 0], scores
    # the best total, not each row's best: a0 -> b1 and a1 -> b0 (1.6) beat a0 -> b0 and a1 -> b1 (0.95)
    assert best_assignment(np.array([[0.9, 0.8], [0.8, 0.05]], F32)) == [(0, 1), (1, 0)]
    # ties trt_pose settles in its own way, where SciPy's solver picks another of the best assignments
    for tie, expected in (([[0.5, 1], [0.5, 1]], [(0, 0), (1, 1)]),
                          ([[1, 0.5, 1], [0, 0.5, 1], [1, 0.5, 0.5]], [(0, 2), (1, 1), (2, 0)])):
        tie = np.array(tie, F32)
        assert best_assignment(tie) == expected == [(i, j) for i, j in enumerate(reference_munkres(-tie))]


def test_a_large_assignment_is_the_best_one_too():
    rng = np.random.default_rng(8)
    for rows, cols in ((13, 13), (20, 15), (9, 30)):
        scores = rng.uniform(-0.5, 1, (rows, cols)).astype(F32)
        assert best_assignment(scores) == [(i, j) for i, j in enumerate(reference_munkres(-scores)) if j >= 0]


def test_links_are_kept_only_above_the_threshold_after_the_assignment():
    scores = np.array([[[[0.1, 0.9], [0.95, 0.0]]]], F32)
    links = np.array([[0, 1, 0, 1]], np.int32)
    connections = assign_links(scores, links, np.array([[2, 2]], np.int32), 0.1)
    assert connections[0, 0].tolist() == [[1, 0], [1, 0]]
    connections = assign_links(scores, links, np.array([[2, 2]], np.int32), 0.9)  # 0.9 itself is not above
    assert connections[0, 0].tolist() == [[-1, 0], [1, -1]]


@pytest.mark.parametrize("seed", range(6))
def test_parse_objects_gives_trt_pose_s_people_on_random_maps(seed):
    cmap, paf = random_maps(seed, n_images=2)
    assert_same_parse(parse_objects(cmap, paf, TOPOLOGY), reference_parse_objects(cmap, paf, TOPOLOGY.links))
    options = dict(cmap_threshold=0.3, link_threshold=0.02, cmap_window=3, line_integral_samples=5,
                   max_num_parts=4, max_num_objects=3)
    assert_same_parse(parse_objects(cmap, paf, TOPOLOGY, **options),
                      reference_parse_objects(cmap, paf, TOPOLOGY.links, **options))


def test_parse_objects_gives_trt_pose_s_people_on_drawn_people():
    truth = people_in_a_row(5, TOPOLOGY)
    truth[1, TOPOLOGY.keypoints.index("left_wrist")] = np.nan
    cmap, paf = draw_maps(truth, TOPOLOGY)
    assert_same_parse(parse_objects(cmap, paf, TOPOLOGY), reference_parse_objects(cmap, paf, TOPOLOGY.links))


def test_a_person_who_reaches_two_peaks_of_a_keypoint_keeps_the_last_reached():
    # links A-B, A-C, B-D, C-D (a cycle, as nose-eyes-ears-shoulders-neck is in the human topology) join A0-B0,
    # A0-C0, B0-D0 and C0-D1: breadth-first from A0, link by link, reaches B0, C0, then D0 (from B0) and D1 (from
    # C0), so the person's D is peak 1
    links = np.array([[0, 1, 0, 1], [2, 3, 0, 2], [4, 5, 1, 3], [6, 7, 2, 3]], np.int32)
    counts = np.array([[1, 1, 1, 2]], np.int32)
    connections = np.full((1, 4, 2, 2), -1, np.int32)
    for k, a, b in ((0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0, 1)):
        connections[0, k, 0, a], connections[0, k, 1, b] = b, a
    object_counts, objects = connect_parts(connections, links, counts, 10)
    assert object_counts.tolist() == [1] and objects[0, 0].tolist() == [0, 0, 0, 1]
    assert reference_connect_parts(connections, links, counts, 10)[1][0, 0].tolist() == [0, 0, 0, 1]


def test_connect_parts_is_trt_pose_s_on_random_links():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, (1, TOPOLOGY.num_keypoints)).astype(np.int32)
    connections = np.full((1, TOPOLOGY.num_links, 2, 4), -1, np.int32)
    for k, (_, _, a, b) in enumerate(TOPOLOGY.links):
        for i in range(counts[0, a]):
            j = rng.integers(0, 4)
            if j < counts[0, b] and connections[0, k, 1, j] < 0:
                connections[0, k, 0, i], connections[0, k, 1, j] = j, i
    for max_count in (100, 2):
        got = connect_parts(connections, TOPOLOGY, counts, max_count)
        expected = reference_connect_parts(connections, TOPOLOGY.links, counts, max_count)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])


# ---------------------------------------------------------------------------------------------------------------
# Hand-made maps with known answers
# ---------------------------------------------------------------------------------------------------------------

def test_one_person_is_found_with_every_keypoint_where_it_was_drawn():
    truth = people_in_a_row(1, TOPOLOGY, height=0.8, top=0.1)
    result = parse_objects(*draw_maps(truth, TOPOLOGY), TOPOLOGY)
    assert result[0].tolist() == [1]
    matched(found_people(result), truth, tolerance=0.5 / 56)


def test_five_people_are_found_each_whole():
    truth = people_in_a_row(5, TOPOLOGY, height=0.5)
    truth[:, :, 1] += np.array([0.0, 0.3, 0.1, 0.35, 0.05])[:, None]  # some nearer the camera than others
    result = parse_objects(*draw_maps(truth, TOPOLOGY, map_size=(112, 112)), TOPOLOGY)
    assert result[0].tolist() == [5]
    matched(found_people(result), truth, tolerance=0.5 / 112)


def test_overlapping_people_are_kept_apart():
    # the second person stands a little lower, half a body-width to the right: arms cross the first one's body
    first = people_in_a_row(1, TOPOLOGY, height=0.6, top=0.1)[0]
    second = first + (0.22, 0.08)
    truth = np.stack([first, second])
    result = parse_objects(*draw_maps(truth, TOPOLOGY, map_size=(112, 112)), TOPOLOGY)
    assert result[0].tolist() == [2]
    matched(found_people(result), truth, tolerance=0.5 / 112)


def test_missing_parts_are_minus_one_and_a_cut_body_falls_apart():
    truth = people_in_a_row(3, TOPOLOGY, height=0.8, top=0.1)
    index = TOPOLOGY.keypoints.index
    truth[0, [index("left_wrist"), index("left_elbow")]] = np.nan  # an arm out of view
    truth[1, [index(n) for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]] = np.nan  # no face
    truth[2, [index("neck"), index("left_hip"), index("right_hip")]] = np.nan  # nothing holds the legs on
    result = parse_objects(*draw_maps(truth, TOPOLOGY, map_size=(112, 112)), TOPOLOGY)
    object_counts, objects, _ = result
    assert object_counts.tolist() == [5]
    pieces = []
    for names in (("left_knee", "left_ankle"), ("right_knee", "right_ankle")):
        piece = np.full_like(truth[2], np.nan)
        piece[[index(n) for n in names]] = truth[2, [index(n) for n in names]]
        pieces.append(piece)
    upper_body = np.where(np.isnan(pieces[0]) & np.isnan(pieces[1]), truth[2], np.nan)
    order = matched(found_people(result), [truth[0], truth[1], upper_body, *pieces], tolerance=0.5 / 112)
    assert objects[0, order[0], index("left_wrist")] == -1 and objects[0, order[1], index("nose")] == -1


def test_a_batch_of_more_planes_than_an_opencv_image_holds_parses_each_frame_as_alone():
    # OpenCV 5's images hold at most 128 channels: 18 keypoints a frame fill that at 7 frames; 30 frames (540
    # planes) pass OpenCV 4's 512 too
    frames = [draw_maps(people_in_a_row(1 + i % 5, TOPOLOGY), TOPOLOGY) for i in range(30)]
    cmap, paf = (np.concatenate(maps) for maps in zip(*frames, strict=True))
    for batch in (8, 9, 30):
        counts, objects, peaks = parse_objects(cmap[:batch], paf[:batch], TOPOLOGY)
        assert counts.tolist() == [1 + i % 5 for i in range(batch)]
        for i in (0, 7, batch - 1):
            assert_same_parse((counts[i:i + 1], objects[i:i + 1], peaks[i:i + 1]),
                              parse_objects(cmap[i:i + 1], paf[i:i + 1], TOPOLOGY))


def test_empty_maps_give_no_one():
    cmap = np.zeros((2, 18, 56, 56), F32)
    object_counts, objects, peaks = parse_objects(cmap, np.zeros((2, 42, 56, 56), F32), TOPOLOGY)
    assert object_counts.tolist() == [0, 0] and (objects == -1).all() and not peaks.any()
    assert parse_people(cmap, np.zeros((2, 42, 56, 56), F32), TOPOLOGY, (224, 224)) == [[], []]


# ---------------------------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------------------------

def test_the_outputs_have_trt_pose_s_shapes_and_types_and_take_trt_pose_s_inputs():
    cmap, paf = draw_maps(people_in_a_row(2, TOPOLOGY), TOPOLOGY)
    object_counts, objects, peaks = parse_objects(cmap, paf, TOPOLOGY, max_num_parts=30, max_num_objects=10)
    assert (object_counts.shape, object_counts.dtype) == ((1,), np.int32)
    assert (objects.shape, objects.dtype) == ((1, 10, 18), np.int32)
    assert (peaks.shape, peaks.dtype) == ((1, 18, 30, 2), np.float32)
    # trt_pose's own inputs: torch tensors, and its topology tensor (trt_pose.coco.coco_category_to_topology)
    as_torch = parse_objects(torch.from_numpy(cmap), torch.from_numpy(paf), torch.from_numpy(TOPOLOGY.links.copy()),
                             max_num_parts=30, max_num_objects=10)
    assert_same_parse(as_torch, (object_counts, objects, peaks))


def test_maps_that_do_not_fit_the_topology_are_refused_naming_the_channels():
    cmap, paf = np.zeros((1, 17, 56, 56), F32), np.zeros((1, 40, 56, 56), F32)
    with pytest.raises(JetracerError) as error:
        parse_objects(cmap, paf, TOPOLOGY)
    assert "cmap has 17 channels, the topology has 18 keypoints" in str(error.value)
    assert "paf has 40 channels, the topology's 21 links need 42" in str(error.value)
    with pytest.raises(JetracerError, match="differ in batch size or map size"):
        parse_objects(np.zeros((1, 18, 56, 56), F32), np.zeros((1, 42, 28, 28), F32), TOPOLOGY)
    with pytest.raises(JetracerError, match=r"\(N, C, H, W\)"):
        parse_objects(np.zeros((18, 56, 56), F32), np.zeros((42, 56, 56), F32), TOPOLOGY)


def test_people_have_image_coordinates_and_the_peak_s_confidence():
    truth = people_in_a_row(2, TOPOLOGY, height=0.8, top=0.1)
    truth[1, TOPOLOGY.keypoints.index("nose")] = np.nan
    cmap, paf = draw_maps(truth, TOPOLOGY)
    cmap = np.concatenate([cmap, np.zeros_like(cmap)])  # a second image, empty
    paf = np.concatenate([paf, paf * 0])
    width, height = 640, 480
    people = parse_people(cmap, paf, TOPOLOGY, (width, height))
    assert [len(p) for p in people] == [2, 0]
    result = parse_objects(cmap, paf, TOPOLOGY)
    assert people_from_objects(*result, cmap, TOPOLOGY, (width, height)) == people
    by_x = sorted(people[0], key=lambda p: p.keypoints["neck"].x)
    assert "nose" not in by_x[1].keypoints and len(by_x[0].keypoints) == 18
    for person, drawn in zip(by_x, truth, strict=True):
        table = person.as_array(TOPOLOGY.keypoints)
        assert np.isnan(table[:, 0]).tolist() == np.isnan(drawn[:, 0]).tolist()
        np.testing.assert_allclose(table[:, :2], drawn * (width, height), atol=0.5 * width / 56)
        neck = person.keypoints["neck"]
        assert neck.score == cmap[0, 17, int(neck.y / height * 56), int(neck.x / width * 56)] > 0.5


def test_parsing_five_people_takes_under_two_milliseconds():
    cmap, paf = draw_maps(people_in_a_row(5, TOPOLOGY), TOPOLOGY)
    assert parse_objects(cmap, paf, TOPOLOGY)[0].tolist() == [5]
    times = []
    for _ in range(200):
        start = time.perf_counter()
        parse_objects(cmap, paf, TOPOLOGY)
        times.append(time.perf_counter() - start)
    p50 = float(np.median(times)) * 1e3
    print(f"parse_objects, 5 people, 56x56: p50 {p50:.2f} ms, p90 {np.percentile(times, 90) * 1e3:.2f} ms")
    assert p50 <= 2.0


def test_the_parser_imports_no_torch_and_no_ros():
    code = "import sys, jetracer_trt.pose; print(sorted({'torch', 'rclpy'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
