"""Expert data collection over many tracks, in parallel processes appending to one dataset."""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

from ..control import ControlParams
from ..dataset import DatasetWriter, read_dataset
from ..errors import JetracerError
from .runner import expert_episode
from .world import SimWorld

FIRST_EVALUATION_SEED = 1000  # seeds from here on are for evaluation only: training on them would flatter results


@dataclass(frozen=True)
class Episode:
    track_seed: int
    run_seed: int
    frames: int
    randomize: bool


def plan_episodes(seeds: list[int], frames: int, episode_frames: int, randomize: bool, start: int) -> list[Episode]:
    """Splits ``frames`` into episodes cycling over ``seeds``. ``start`` (samples already in the dataset) makes
    appended episodes differ from the ones already recorded, while a given dataset state always plans the same."""
    episodes, left, k = [], frames, 0
    while left > 0:
        n = min(episode_frames, left)
        episodes.append(Episode(seeds[k % len(seeds)], start + k, n, randomize))
        left -= n
        k += 1
    return episodes


_writer: DatasetWriter | None = None


def _init_worker(root: str) -> None:
    global _writer
    _writer = DatasetWriter(root)


def run_episode(episode: Episode) -> int:
    """Records one episode into this process's dataset writer; returns the frames written."""
    writer = _writer
    world = SimWorld(episode.track_seed, randomize=episode.randomize, run_seed=episode.run_seed)
    params = ControlParams.from_config(profile="sim")

    def sink(frame, x, y, meta):
        writer.append(frame, x, y, track_seed=episode.track_seed, run_seed=episode.run_seed,
                      randomized=episode.randomize, **meta)

    expert_episode(world, params, episode.frames, sink)
    return episode.frames


def collect(out: str | Path, seeds: list[int], frames: int, randomize: bool, episode_frames: int = 300,
            workers: int = 1, allow_evaluation_seeds: bool = False, on_progress=None) -> int:
    """Appends ``frames`` expert-labelled frames to the dataset at ``out``; returns how many were written."""
    if frames <= 0:
        raise JetracerError("--frames must be a positive number")
    reserved = [s for s in seeds if s >= FIRST_EVALUATION_SEED]
    if reserved and not allow_evaluation_seeds:
        raise JetracerError(
            f"track seeds {FIRST_EVALUATION_SEED} and above are reserved for evaluation (got {reserved[0]}); "
            "collect on seeds below 1000"
        )
    with DatasetWriter(out):  # creates the dataset (or checks it) before any worker starts
        pass
    start = len(read_dataset(out)[0])
    episodes = plan_episodes(seeds, frames, episode_frames, randomize, start)
    written = 0
    if workers <= 1:
        _init_worker(str(out))
        try:
            for ep in episodes:
                written += run_episode(ep)
                if on_progress:
                    on_progress(ep.frames)
        finally:
            _writer.close()
        return written
    # forkserver, not fork: forking a process that runs DDS or CUDA threads can deadlock the child
    with mp.get_context("forkserver").Pool(workers, initializer=_init_worker, initargs=(str(out),)) as pool:
        for n in pool.imap_unordered(run_episode, episodes):
            written += n
            if on_progress:
                on_progress(n)
    return written
