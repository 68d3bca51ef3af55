"""Episodes into rerun: camera frames with state, action and reward traces on one timeline.

Two timelines: `frame` (the control step) and `time` (seconds since the
episode started), so reward curves line up with the image that produced them.
Only real (rendered) images are logged: a frame whose camera was not rendered
holds a black placeholder, and rerun keeps showing the last real image instead.
"""

from __future__ import annotations

import json

import numpy as np
import rerun as rr


def log_episode(recording: rr.RecordingStream, store, index: int) -> int:
    """Log episode `index` of `store` into `recording`; returns the number of frames logged
    (every frame's state, action and rewards; images only where real)."""
    record = store.episodes(indices=[index])[0]
    rr.log(
        "episode",
        rr.TextDocument(json.dumps({"index": index, **record.meta.to_json()}, indent=2), media_type="text/markdown"),
        static=True,
        recording=recording,
    )
    frames = 0
    states, actions, timestamps = [], [], []
    rewards: dict[str, list[float]] = {}
    for t, frame in enumerate(store.iter_frames(index)):
        rr.set_time("frame", sequence=t, recording=recording)
        rr.set_time("time", duration=float(frame.timestamp), recording=recording)
        for name, image in frame.images.items():
            if frame.is_real(name):
                rr.log(f"camera/{name}", rr.Image(image), recording=recording)
        states.append(frame.state)
        actions.append(frame.action)
        timestamps.append(frame.timestamp)
        for modality, value in frame.rewards.items():
            rewards.setdefault(modality, [np.nan] * t).append(value)
        for series in rewards.values():
            series.extend([np.nan] * (t + 1 - len(series)))
        frames += 1
    if frames == 0:
        return 0
    steps = np.arange(frames)
    times = np.asarray(timestamps, dtype=np.float64)
    _send_series(recording, "state", np.asarray(states), steps, times)
    _send_series(recording, "action", np.asarray(actions), steps, times)
    for modality, series in rewards.items():
        values = np.asarray(series, dtype=np.float64)
        queried = ~np.isnan(values)  # a held or unqueried step is a gap, not a zero
        _send_series(recording, f"reward/{modality}", values[queried][:, None], steps[queried], times[queried])
    return frames


def _send_series(recording: rr.RecordingStream, prefix: str, values: np.ndarray, steps, times) -> None:
    if values.ndim == 1:
        values = values[:, None]
    for dim in range(values.shape[1]):
        path = prefix if values.shape[1] == 1 and prefix.startswith("reward/") else f"{prefix}/{dim}"
        rr.send_columns(
            path,
            indexes=[rr.TimeColumn("frame", sequence=steps), rr.TimeColumn("time", duration=times)],
            columns=rr.Scalars.columns(scalars=values[:, dim].astype(np.float64)),
            recording=recording,
        )
