"""From confidence maps and part affinity fields to people: trt_pose's parser, in numpy.

``parse_objects`` gives what trt_pose's ``ParseObjects`` gives, with the same shapes, dtypes and meaning, so code
written for trt_pose (its ``DrawObjects``, say) works unchanged on the result:

* ``object_counts`` ``(N,)`` int32: people found per image;
* ``objects`` ``(N, max_num_objects, C)`` int32: per person and keypoint, the index of the keypoint's peak in
  ``normalized_peaks``, -1 where the person has none;
* ``normalized_peaks`` ``(N, C, max_num_parts, 2)`` float32: per keypoint, its peaks as ``(y, x)`` in [0, 1] of
  the map's height and width (pixel ``i`` spans ``[i / H, (i + 1) / H)``), zeros past the keypoint's peak count.

The stages are those of trt_pose's C++ plugins (``trt_pose/parse/*.cpp``), one function each, and each matches the
plugin's rules, float32 arithmetic included, so that the same maps give the same people and keypoints:

1. ``find_peaks``: a pixel is a peak of its channel when it is at least ``cmap_threshold`` and no pixel of the
   ``cmap_window``-wide square around it (cut at the map's edges; half-width ``cmap_window // 2``) is larger: equal
   neighbours are peaks both. Peaks are listed in row-major order, the first ``max_num_parts`` of each channel.
2. ``refine_peaks``: the weighted mean of the row and column offsets over the same window, weights the confidence
   map, the window mirrored at the map's edges (row -1 reads row 1, row H reads row H - 2) while the offsets keep
   their unmirrored values; plus half a pixel, divided by the map's size.
3. ``paf_score_graph``: for each link and each pair of peaks (a, b) of its two keypoints, the mean over
   ``line_integral_samples`` points evenly spaced from a to b (both ends included) of the part affinity vector at
   the point's pixel (coordinates truncated toward zero) dotted with the unit vector a -> b; samples that fall
   outside the map count as zero.
4. ``assign_links``: per link, the assignment of a peaks to b peaks with the largest total score (trt_pose solves
   it with its Munkres on the negated scores), then only pairs scoring more than ``link_threshold`` are kept.
5. ``connect_parts``: people are the connected groups of peaks, found breadth-first from each peak not yet in a
   person, keypoints in order and peaks in order; a person's entry for a keypoint is the last of its peaks the
   search reached. At most ``max_num_objects`` people.

Step 4 is trt_pose's Munkres (``trt_pose/parse/munkres.cpp``) step for step, float32 and scanning order included,
so that ties between equally good assignments go its way too: the first reductions and stars for every link at once
in numpy (when those stars already fill every row or column, as they do whenever the best pairs do not compete, it
is done), the remaining steps on that link's small matrix. A matrix with more than ``MUNKRES_MAX_SIZE`` peaks on a
side (a map of noise, not people) goes to SciPy's ``linear_sum_assignment`` instead: the same best assignment,
except that an exact tie may be settled another way.

Everything is vectorised over peaks and pairs; the only Python loops are over links (assignment) and over peaks
(the grouping), never over pixels. Inputs are ``(N, C, H, W)`` numpy arrays or torch tensors (copied to the CPU as
float32).
"""
from __future__ import annotations

from collections import deque
from typing import Any

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import JetracerError
from .topology import PoseTopology, links_array

_F32 = np.float32
# trt_pose adds this (a C double) to every link length before dividing by it
_LENGTH_EPSILON = 1e-5
# stands in for non-finite scores in the assignment: such a pair is never kept (NaN > threshold is false)
_SCORE_LIMIT = 1e30
# the most channels an OpenCV image may have (CV_CN_MAX: 128 in OpenCV 5, 512 in OpenCV 4): cmap's 18 channels a
# frame fill it at 7 frames, so batches are dilated in chunks of this many planes
_CV_MAX_CHANNELS = 128
# the largest side of a score matrix that trt_pose's Munkres, step by step in Python, solves; SciPy's solver (the
# same best assignment, ties aside) takes larger ones, whose Python steps would cost milliseconds
MUNKRES_MAX_SIZE = 12
# pairs scored per numpy pass: their (pairs, samples) arrays then stay in the CPU's cache
_PAIRS_AT_ONCE = 8192


def parse_objects(cmap: Any, paf: Any, topology: PoseTopology | Any, cmap_threshold: float = 0.1,
                  link_threshold: float = 0.1, cmap_window: int = 5, line_integral_samples: int = 7,
                  max_num_parts: int = 100, max_num_objects: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(object_counts, objects, normalized_peaks)`` for confidence maps ``cmap`` ``(N, C, H, W)`` and part
    affinity fields ``paf`` ``(N, 2K, H, W)``, as trt_pose's ``ParseObjects(topology, ...)(cmap, paf)``.

    ``topology`` is a PoseTopology or trt_pose's ``(K, 4)`` topology array. JetracerError when the maps do not fit
    the topology or each other."""
    cmap = as_maps(cmap, "cmap")
    paf = as_maps(paf, "paf")
    links = links_array(topology)
    _check_maps(cmap, paf, links, topology, cmap_window)
    counts, peaks = find_peaks(cmap, cmap_threshold, cmap_window, max_num_parts)
    normalized_peaks = refine_peaks(counts, peaks, cmap, cmap_window)
    # the score graph and connections need only as many peak slots as the busiest keypoint has
    used = max(int(counts.max(initial=0)), 1)
    scores = paf_score_graph(paf, links, counts, normalized_peaks[:, :, :used], line_integral_samples)
    connections = assign_links(scores, links, counts, link_threshold)
    object_counts, objects = connect_parts(connections, links, counts, max_num_objects)
    return object_counts, objects, normalized_peaks


def as_maps(maps: Any, name: str) -> np.ndarray:
    """A C-contiguous float32 ``(N, C, H, W)`` numpy array of ``maps`` (numpy, or a torch tensor on any device)."""
    if hasattr(maps, "detach"):
        maps = maps.detach().cpu().numpy()
    array = np.ascontiguousarray(maps, dtype=_F32)
    if array.ndim != 4:
        raise JetracerError(f"{name} must be a (N, C, H, W) array, not one of shape {array.shape}")
    return array


def _check_maps(cmap: np.ndarray, paf: np.ndarray, links: np.ndarray, topology: Any, cmap_window: int) -> None:
    if isinstance(topology, PoseTopology):
        topology.check_maps(cmap.shape[1], paf.shape[1], "the maps")
    elif links.size and (links[:, 2:].max() >= cmap.shape[1] or links[:, :2].max() >= paf.shape[1]):
        raise JetracerError(f"the topology names keypoint channels up to {links[:, 2:].max()} and paf channels up "
                            f"to {links[:, :2].max()}, but cmap has {cmap.shape[1]} and paf {paf.shape[1]}")
    if cmap.shape[0] != paf.shape[0] or cmap.shape[2:] != paf.shape[2:]:
        raise JetracerError(f"cmap {cmap.shape} and paf {paf.shape} differ in batch size or map size")
    if cmap_window < 1 or cmap_window // 2 >= min(cmap.shape[2:]):
        raise JetracerError(f"cmap_window {cmap_window} does not fit maps of {cmap.shape[2]}x{cmap.shape[3]}")


def find_peaks(cmap: np.ndarray, threshold: float, window: int, max_count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (N, C) int32, peaks (N, C, max_count, 2) int32 (row, column))``: trt_pose's ``find_peaks``."""
    n, c, h, w = cmap.shape
    half = window // 2
    window_max = _window_max(cmap, half)
    is_peak = (cmap >= _F32(threshold)) & (cmap >= window_max)
    flat = np.flatnonzero(is_peak)  # row-major: image, channel, row, column, the order trt_pose lists peaks in
    channel = flat // (h * w)
    per_channel = np.bincount(channel, minlength=n * c)
    rank = np.arange(flat.size) - np.repeat(np.cumsum(per_channel) - per_channel, per_channel)
    keep = rank < max_count
    flat, channel, rank = flat[keep], channel[keep], rank[keep]
    counts = np.minimum(per_channel, max_count).astype(np.int32).reshape(n, c)
    peaks = np.zeros((n * c, max_count, 2), dtype=np.int32)
    pixel = flat % (h * w)
    peaks[channel, rank, 0] = pixel // w
    peaks[channel, rank, 1] = pixel % w
    return counts, peaks.reshape(n, c, max_count, 2)


def _window_max(maps: np.ndarray, half: int) -> np.ndarray:
    """Each pixel's largest value over the square of half-width ``half`` around it, cut at the map's edges (OpenCV's
    dilation leaves out what lies past the edge, which is trt_pose's rule), channel by channel."""
    n, c, h, w = maps.shape
    planes = maps.reshape(n * c, h, w)
    out = np.empty_like(planes)
    kernel = np.ones((2 * half + 1, 2 * half + 1), dtype=np.uint8)
    for start in range(0, n * c, _CV_MAX_CHANNELS):  # OpenCV takes the channels of one chunk as an image's
        chunk = np.ascontiguousarray(planes[start:start + _CV_MAX_CHANNELS].transpose(1, 2, 0))
        out[start:start + _CV_MAX_CHANNELS] = cv2.dilate(chunk, kernel).reshape(h, w, -1).transpose(2, 0, 1)
    return out.reshape(n, c, h, w)


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """trt_pose's border rule for the refinement window: -i for i < 0, 2 * size - 2 - i for i >= size."""
    return np.where(index < 0, -index, np.where(index >= size, 2 * size - 2 - index, index))


def refine_peaks(counts: np.ndarray, peaks: np.ndarray, cmap: np.ndarray, window: int) -> np.ndarray:
    """``(N, C, M, 2)`` float32 normalised ``(y, x)`` of each peak: trt_pose's ``refine_peaks``."""
    n, c, h, w = cmap.shape
    m = peaks.shape[2]
    half = window // 2
    image_channel, slot = np.nonzero(np.arange(m)[None, :] < counts.reshape(-1, 1))
    row = peaks.reshape(n * c, m, 2)[image_channel, slot, 0]
    col = peaks.reshape(n * c, m, 2)[image_channel, slot, 1]
    offsets = np.arange(-half, half + 1)
    rows = row[:, None] + offsets  # (P, window): unmirrored coordinates weigh the mean
    cols = col[:, None] + offsets
    base = image_channel[:, None, None] * (h * w)
    weights = cmap.reshape(-1)[base + _mirror(rows, h)[:, :, None] * w + _mirror(cols, w)[:, None, :]]
    size = 2 * half + 1
    # trt_pose sums in float32, row by row then column by column: add.accumulate sums in exactly that order
    weighted_rows = weights * rows.astype(_F32)[:, :, None]
    weighted_cols = weights * cols.astype(_F32)[:, None, :]
    sums = np.add.accumulate(np.stack([weighted_rows, weighted_cols, weights]).reshape(3, -1, size * size), axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = (sums[0, :, -1] / sums[2, :, -1] + _F32(0.5)) / _F32(h)
        x = (sums[1, :, -1] / sums[2, :, -1] + _F32(0.5)) / _F32(w)
    refined = np.zeros((n * c, m, 2), dtype=_F32)
    refined[image_channel, slot, 0] = y
    refined[image_channel, slot, 1] = x
    return refined.reshape(n, c, m, 2)


def paf_score_graph(paf: np.ndarray, topology: PoseTopology | Any, counts: np.ndarray, peaks: np.ndarray,
                    num_samples: int) -> np.ndarray:
    """``(N, K, M, M)`` float32 link scores, ``[n, k, a, b]`` for peak a of link k's first keypoint and peak b of
    its second (zero past the peak counts): trt_pose's ``paf_score_graph``. ``peaks`` are normalised."""
    links = links_array(topology)
    n, _, h, w = paf.shape
    k_links = links.shape[0]
    m = peaks.shape[2]
    scores = np.zeros((n, k_links, m, m), dtype=_F32)
    slots = np.arange(m)
    count_a = counts[:, links[:, 2]]  # (N, K)
    count_b = counts[:, links[:, 3]]
    image, link, a, b = np.nonzero((slots[None, None, :, None] < count_a[:, :, None, None])
                                   & (slots[None, None, None, :] < count_b[:, :, None, None]))
    for start in range(0, image.size, _PAIRS_AT_ONCE):
        chunk = slice(start, start + _PAIRS_AT_ONCE)
        scores[image[chunk], link[chunk], a[chunk], b[chunk]] = _line_integrals(
            paf, links, peaks, image[chunk], link[chunk], a[chunk], b[chunk], num_samples)
    return scores


def _line_integrals(paf: np.ndarray, links: np.ndarray, peaks: np.ndarray, image: np.ndarray, link: np.ndarray,
                    a: np.ndarray, b: np.ndarray, num_samples: int) -> np.ndarray:
    """The float32 score of each pair (image, link, peak a, peak b), in trt_pose's order of operations."""
    _, _, h, w = paf.shape
    peak_a = peaks[image, links[link, 2], a]  # (P, 2) normalised (y, x)
    peak_b = peaks[image, links[link, 3], b]
    a_i, a_j = peak_a[:, 0] * _F32(h), peak_a[:, 1] * _F32(w)
    ab_i, ab_j = peak_b[:, 0] * _F32(h) - a_i, peak_b[:, 1] * _F32(w) - a_j
    with np.errstate(invalid="ignore", divide="ignore"):
        length = (np.sqrt(ab_i * ab_i + ab_j * ab_j).astype(np.float64) + _LENGTH_EPSILON).astype(_F32)
        u_i, u_j = ab_i / length, ab_j / length
        progress = np.arange(num_samples, dtype=_F32) / _F32(num_samples - 1)
        t_i = a_i[:, None] + progress * ab_i[:, None]  # (P, T)
        t_j = a_j[:, None] + progress * ab_j[:, None]
    # trt_pose truncates toward zero, so a point in (-1, 0) still reads pixel 0
    inside = (t_i > -1) & (t_i < h) & (t_j > -1) & (t_j < w)
    pixel = np.where(inside, t_i, 0).astype(np.intp) * w + np.where(inside, t_j, 0).astype(np.intp)
    channel_base = ((image * paf.shape[1])[:, None] + links[link, :2]) * (h * w)  # (P, 2): row, column channels
    flat = paf.reshape(-1)
    v_i = flat[channel_base[:, :1] + pixel]
    v_j = flat[channel_base[:, 1:] + pixel]
    dots = np.where(inside, v_i * u_i[:, None] + v_j * u_j[:, None], _F32(0))
    return np.add.accumulate(dots, axis=1)[:, -1] / _F32(num_samples)  # float32, in sample order


def assign_links(scores: np.ndarray, topology: PoseTopology | Any, counts: np.ndarray,
                 threshold: float) -> np.ndarray:
    """``(N, K, 2, M)`` int32 connections: ``[n, k, 0, a]`` the b peak linked to a peak a by link k and
    ``[n, k, 1, b]`` the other way, -1 where none: trt_pose's ``assignment``."""
    links = links_array(topology)
    n, k_links, m, _ = scores.shape
    connections = np.full((n, k_links, 2, m), -1, dtype=np.int32)
    count_a, count_b = counts[:, links[:, 2]], counts[:, links[:, 3]]  # (N, K)
    scores = _finite(scores)
    costs = _reduced_costs(scores, count_a, count_b)
    zeros = costs == 0
    found: list[tuple[int, int, int, int]] = []
    for image, link in zip(*np.nonzero((count_a > 0) & (count_b > 0)), strict=True):
        rows, cols = int(count_a[image, link]), int(count_b[image, link])
        found += [(image, link, a, b) for a, b in _solve(zeros[image, link], costs[image, link], scores[image, link],
                                                         rows, cols)]
    if found:
        image, link, a, b = np.array(found, dtype=np.intp).T
        kept = scores[image, link, a, b] > _F32(threshold)
        image, link, a, b = image[kept], link[kept], a[kept], b[kept]
        connections[image, link, 0, a] = b
        connections[image, link, 1, b] = a
    return connections


def best_assignment(scores: np.ndarray) -> list[tuple[int, int]]:
    """The (row, column) pairs, in row order, of the assignment of rows to columns with the largest total of the
    float32 ``scores``, the one trt_pose's Munkres picks (ties included, up to ``MUNKRES_MAX_SIZE``)."""
    rows, cols = scores.shape
    if rows == 0 or cols == 0:
        return []
    scores = _finite(np.asarray(scores, dtype=_F32))
    costs = _reduced_costs(scores, np.array(rows), np.array(cols))
    return _solve(costs == 0, costs, scores, rows, cols)


def _solve(zeros: np.ndarray, costs: np.ndarray, scores: np.ndarray, rows: int, cols: int) -> list[tuple[int, int]]:
    """The best assignment of the top-left ``rows`` x ``cols``: trt_pose's Munkres (its first stars, and when they
    do not complete it, its other steps), or SciPy's solver for a large matrix."""
    if max(rows, cols) <= MUNKRES_MAX_SIZE:
        stars = _first_stars(zeros[:rows, :cols].tolist(), rows, cols)
        if len(stars) >= min(rows, cols):
            return stars
        return _finish_munkres(costs[:rows, :cols].copy(), stars)
    best_rows, best_cols = linear_sum_assignment(scores[:rows, :cols].astype(np.float64), maximize=True)
    return list(zip(best_rows.tolist(), best_cols.tolist(), strict=True))


def _finite(scores: np.ndarray) -> np.ndarray:
    if np.isfinite(scores).all():
        return scores
    return np.nan_to_num(scores, nan=-_SCORE_LIMIT, posinf=_SCORE_LIMIT, neginf=-_SCORE_LIMIT)


def _reduced_costs(scores: np.ndarray, count_a: np.ndarray, count_b: np.ndarray) -> np.ndarray:
    """trt_pose's Munkres costs after its first reductions, for score matrices ``(..., R, C)`` of which the top-left
    ``count_a`` x ``count_b`` (arrays shaped like ``scores.shape[:-2]``) is used; inf elsewhere. Its costs are the
    negated scores, less each row's smallest when there are at least as many columns as rows, then less each
    column's smallest when there are at least as many rows, in float32."""
    count_a, count_b = count_a[..., None, None], count_b[..., None, None]
    used = ((np.arange(scores.shape[-2])[:, None] < count_a) & (np.arange(scores.shape[-1])[None, :] < count_b))
    masked = np.where(used, scores, -np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf past the used columns: never read
        by_row = np.where(used, masked.max(axis=-1, keepdims=True) - scores, np.inf)  # (-s) - (-row best), rounded so
        by_row_then_column = by_row - by_row.min(axis=-2, keepdims=True)
        by_column = np.where(used, masked.max(axis=-2, keepdims=True) - scores, np.inf)
    return np.where(count_b > count_a, by_row, np.where(count_b < count_a, by_column, by_row_then_column))


def _first_stars(zeros: list[list[bool]], rows: int, cols: int) -> list[tuple[int, int]]:
    """trt_pose's Munkres step 1: each row in turn stars its first zero in a column not starred yet."""
    taken = [False] * cols
    stars = []
    for row in range(rows):
        line = zeros[row]
        for col in range(cols):
            if line[col] and not taken[col]:
                taken[col] = True
                stars.append((row, col))
                break
    return stars


def _finish_munkres(cost: np.ndarray, stars: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The rest of trt_pose's Munkres (``trt_pose/parse/munkres.cpp``, steps 2 to 5) from its reduced float32
    ``cost`` and first ``stars``, scanning in its order so that ties go its way: the final stars, in row order."""
    rows, cols = cost.shape
    star_of_row = np.full(rows, -1)
    star_of_col = np.full(cols, -1)
    for row, col in stars:
        star_of_row[row], star_of_col[col] = col, row
    prime_of_row = np.full(rows, -1)
    row_covered = np.zeros(rows, dtype=bool)
    col_covered = star_of_col >= 0  # step 2
    while col_covered.sum() < min(rows, cols):
        prime = _prime_uncovered_zeros(cost, star_of_row, prime_of_row, row_covered, col_covered)  # step 3
        if prime is None:  # step 5: make a zero where none is uncovered, keeping the covered ones
            smallest = cost[~row_covered][:, ~col_covered].min()
            cost[row_covered] += smallest
            cost[:, ~col_covered] -= smallest
            continue
        row, col = prime  # step 4: flip the path of alternating primes and stars that starts at this prime
        while star_of_col[col] >= 0:
            starred_row = star_of_col[col]
            star_of_row[starred_row] = -1
            star_of_row[row], star_of_col[col] = col, row
            row, col = starred_row, prime_of_row[starred_row]
        star_of_row[row], star_of_col[col] = col, row
        prime_of_row[:] = -1
        row_covered[:] = False
        col_covered = star_of_col >= 0  # step 2
    return [(row, int(col)) for row, col in enumerate(star_of_row.tolist()) if col >= 0]


def _prime_uncovered_zeros(cost: np.ndarray, star_of_row: np.ndarray, prime_of_row: np.ndarray,
                           row_covered: np.ndarray, col_covered: np.ndarray) -> tuple[int, int] | None:
    """trt_pose's step 3, one pass in row-major order: prime each uncovered zero; a primed zero whose row has a
    star covers that row and uncovers the star's column, and the pass goes on below; the first primed zero in a
    row without a star ends the pass and is returned. None when the pass ends without one."""
    rows, cols = cost.shape
    row = 0
    while row < rows:
        candidates = (cost[row:] == 0) & ~row_covered[row:, None] & ~col_covered[None, :]
        hits = np.flatnonzero(candidates)
        if hits.size == 0:
            return None
        row, col = row + int(hits[0]) // cols, int(hits[0]) % cols
        prime_of_row[row] = col
        if star_of_row[row] < 0:
            return row, col
        row_covered[row] = True
        col_covered[star_of_row[row]] = False
        row += 1
    return None


def connect_parts(connections: np.ndarray, topology: PoseTopology | Any, counts: np.ndarray,
                  max_count: int) -> tuple[np.ndarray, np.ndarray]:
    """``(object_counts (N,) int32, objects (N, max_count, C) int32)``: trt_pose's ``connect_parts``."""
    links = links_array(topology).tolist()
    n, num_parts = counts.shape
    # per keypoint, the links that touch it, in link order: (link, which end this keypoint is, the other keypoint)
    touching: list[list[tuple[int, int, int]]] = [[] for _ in range(num_parts)]
    for k, (_, _, part_a, part_b) in enumerate(links):
        touching[part_a].append((k, 0, part_b))
        touching[part_b].append((k, 1, part_a))
    object_counts = np.zeros(n, dtype=np.int32)
    objects = np.full((n, max_count, num_parts), -1, dtype=np.int32)
    for image in range(n):
        linked = connections[image].tolist()
        image_counts = counts[image].tolist()
        visited = [[False] * count for count in image_counts]
        found = 0
        for part in range(num_parts):
            for peak in range(image_counts[part]):
                if found >= max_count:
                    break
                person = _grow_person(part, peak, linked, touching, visited)
                if person:
                    for person_part, person_peak in person.items():
                        objects[image, found, person_part] = person_peak
                    found += 1
        object_counts[image] = found
    return object_counts, objects


def _grow_person(part: int, peak: int, linked: list, touching: list, visited: list) -> dict[int, int]:
    """Breadth-first from one peak over the kept links: {keypoint: the last of its peaks reached}; empty when the
    peak already belongs to a person."""
    person: dict[int, int] = {}
    queue = deque([(part, peak)])
    while queue:
        part, peak = queue.popleft()
        if visited[part][peak]:
            continue
        visited[part][peak] = True
        person[part] = peak
        for k, end, other in touching[part]:
            target = linked[k][end][peak]
            if target >= 0:
                queue.append((other, target))
    return person
