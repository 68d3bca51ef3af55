"""Streaming an episode into the store while the rollout runs.

Frames are buffered in memory and written one whole time-chunk at a time:
appending a single frame to a chunked, compressed zarr array would decode and
re-encode its chunk on every frame (quadratic in the chunk length). Only the
first chunk of an episode, shared with the previous episode's tail, is
read-modified-written, once.

Chunk writes run on one background thread, in order, so a control loop
calling `add_frame` at 30 Hz only pays for copying the frame into a buffer;
compression and disk I/O overlap with recording. Up to MAX_CHUNKS_IN_FLIGHT
filled chunks may wait for the disk, which absorbs stalls (another process
hogging the cores, a slow fsync) of about that many chunk durations before
`add_frame` blocks; memory stays bounded by that many chunk buffers.

The background thread also feeds each chunk's rows to the episode's running
checksums (`recordings.integrity`) as it writes them, so checking a commit
later costs no second pass over the frames.

Nothing written here is visible to readers until `commit()` writes the end
index (see `recordings.arrays` for the protocol); a killed process leaves a
tail that the next writer truncates.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

import numpy as np

from recordings import layout
from recordings.arrays import StoreArrays
from recordings.integrity import RunningDigests
from recordings.episode import EpisodeMeta, Frame
from recordings.errors import InvalidEpisodeError, StoreError, WriterStateError
from recordings.schema import StoreSchema, check_meta, schema_from_frame, validate_frame

log = logging.getLogger(__name__)

# Filled chunks queued for the background writer before add_frame waits. With
# 3 x 480x640 cameras and 10-frame chunks that is ~28 MB each, 1/3 s of recording.
MAX_CHUNKS_IN_FLIGHT = 4


class _Window:
    """In-memory buffers for the frames of one time-chunk (or the part of it this episode owns)."""

    def __init__(self, schema: StoreSchema, chunk_frames: int) -> None:
        c = chunk_frames
        self.arrays: dict[str, np.ndarray] = {
            layout.camera_key(n): np.empty((c, h, w, 3), np.uint8) for n, (h, w) in schema.cameras.items()
        }
        self.arrays[layout.STATE] = np.empty((c, schema.state_dim), np.float32)
        self.arrays[layout.ACTION] = np.empty((c, schema.action_dim), np.float32)
        self.arrays[layout.TIMESTAMP] = np.empty((c,), np.float64)
        self.arrays.update({layout.real_key(n): np.empty((c,), np.bool_) for n in schema.cameras})
        self.rewards: dict[str, np.ndarray] = {}
        self.chunk_frames = c
        self.start = 0
        self.capacity = 0
        self.length = 0

    def reset(self, start: int) -> None:
        """Start a new window at global frame `start`, ending at the next chunk boundary."""
        self.start = start
        self.capacity = self.chunk_frames - start % self.chunk_frames
        self.length = 0
        for buf in self.rewards.values():
            buf.fill(np.nan)

    def reward(self, modality: str) -> np.ndarray:
        buf = self.rewards.get(modality)
        if buf is None:
            buf = self.rewards[modality] = np.full((self.chunk_frames,), np.nan, np.float32)
        return buf


class EpisodeWriter:
    """Records one episode frame by frame; get one from `EpisodeStore.begin_episode`.

    Leaving a `with` block normally commits; leaving it by an exception
    discards, unless `commit(aborted=True)` was called first (e.g. from an
    except handler, to keep what a robot recorded before a fault).
    """

    def __init__(self, arrays: StoreArrays, meta: EpisodeMeta) -> None:
        check_meta(meta)
        self._arrays = arrays
        self._meta = copy.deepcopy(meta)
        self.index = arrays.num_episodes
        self.start = arrays.num_frames
        self._schema: StoreSchema | None = arrays.schema
        self._schema_is_new = self._schema is None
        self._modalities: list[str] = []
        self._real: dict[str, int] = {}  # camera -> frames with a real image so far
        self._n = 0
        self._first_ts: float | None = None
        self._last_ts: float | None = None
        self._window: _Window | None = None
        self._free: list[_Window] = []  # buffers whose chunk is on disk, ready for reuse
        self._inflight: deque[tuple[Future[None], _Window]] = deque()  # in submission order
        self._executor: ThreadPoolExecutor | None = None
        self._state = "open"  # open | committed | discarded | failed
        self._failure: str = ""
        self._digests = RunningDigests()  # fed by the flush thread only, in frame order

    # -- public API -----------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """Frames accepted so far (buffered or written)."""
        return self._n

    @property
    def state(self) -> str:
        return self._state

    def add_frame(self, frame: Frame) -> None:
        """Validate and buffer one frame; a full time-chunk is handed to the background writer.

        A rejected frame raises InvalidEpisodeError and changes nothing: the
        episode can continue with the next frame or be discarded.
        """
        self._check_open("add_frame")
        schema = self._schema if self._schema is not None else schema_from_frame(frame)
        checked = validate_frame(frame, self._n, schema, self._last_ts)
        self._raise_if_flush_failed()
        if self._schema is None:
            self._schema = schema
        if self._window is None:
            self._window = _Window(schema, self._arrays.chunk_frames)
            self._window.reset(self.start)
        win = self._window
        i = win.length
        for name, img in checked.images.items():
            win.arrays[layout.camera_key(name)][i] = img
            win.arrays[layout.real_key(name)][i] = checked.real[name]
            self._real[name] = self._real.get(name, 0) + int(checked.real[name])
        win.arrays[layout.STATE][i] = checked.state
        win.arrays[layout.ACTION][i] = checked.action
        win.arrays[layout.TIMESTAMP][i] = checked.timestamp
        for modality, value in checked.rewards.items():
            if modality not in self._modalities:
                self._modalities.append(modality)
            win.reward(modality)[i] = value
        win.length += 1
        self._n += 1
        if self._first_ts is None:
            self._first_ts = checked.timestamp
        self._last_ts = checked.timestamp
        if win.length == win.capacity:
            self._guard(self._flush)

    def update_meta(self, **fields: object) -> EpisodeMeta:
        """Change attributes of the episode being recorded (e.g. its outcome, known only at the end).

        They are committed together with the episode, so no crash can leave it
        committed without them (unlike `EpisodeStore.update_meta` after commit).
        """
        self._check_open("update_meta")
        try:
            meta = dataclasses.replace(self._meta, **copy.deepcopy(fields))
        except (TypeError, ValueError) as exc:
            raise InvalidEpisodeError(f"episode {self.index}: {exc}") from None
        check_meta(meta)
        self._meta = meta
        return copy.deepcopy(meta)

    def commit(self, aborted: bool = False) -> int:
        """Write the remaining frames and the metadata, then the end index; returns the episode index.

        `aborted=True` marks the episode aborted (a fault or an operator stop)
        and keeps the frames recorded so far. An episode with no frames cannot
        be committed (InvalidEpisodeError; the writer stays open).
        """
        self._check_open("commit")
        if self._n == 0:
            raise InvalidEpisodeError(f"episode {self.index} has no frames; nothing to commit (discard it instead)")
        self._guard(self._flush)
        self._guard(self._wait_pending)
        meta = self._meta
        if aborted:
            meta.aborted = True
        if meta.duration_s is None:
            assert self._first_ts is not None and self._last_ts is not None
            meta.duration_s = self._last_ts - self._first_ts
        arrays, start, end, modalities = self._arrays, self.start, self.start + self._n, list(self._modalities)
        assert self._schema is not None
        cams = list(self._schema.cameras)
        keys = [layout.camera_key(c) for c in cams] + [layout.STATE, layout.ACTION, layout.TIMESTAMP]
        keys += [layout.real_key(c) for c in cams]
        checksums = self._digests.to_json(keys + [layout.reward_key(m) for m in modalities])
        real = {c: self._real.get(c, 0) for c in cams}
        self._guard(lambda: arrays.commit_episode(self.index, start, end, meta, modalities, checksums, real))
        index = self.index
        self._state = "committed"
        self._close()
        return index

    def discard(self) -> None:
        """Drop the episode: nothing of it stays on disk. Idempotent; an error after commit."""
        if self._state == "discarded":
            return
        if self._state == "committed":
            raise WriterStateError(f"episode {self.index} is already committed; it cannot be discarded")
        try:
            self._wait_pending()
        except Exception as exc:  # the data is being thrown away anyway
            log.debug("discarding episode %d after a failed flush: %s", self.index, exc)
        self._state = "discarded"
        self._close()
        self._arrays.rollback_tail()

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state in ("committed", "discarded"):
            return
        if exc_type is None and self._state == "open":
            try:
                self.commit()
            except BaseException:
                self._discard_quietly()
                raise
        else:
            self._discard_quietly()

    # -- internals --------------------------------------------------------------------

    def _discard_quietly(self) -> None:
        try:
            self.discard()
        except Exception:
            log.exception("could not discard episode %d", self.index)

    def _check_open(self, what: str) -> None:
        if self._state == "failed":
            raise WriterStateError(
                f"episode {self.index}: cannot {what}, an earlier write failed ({self._failure}); discard it"
            )
        if self._state != "open":
            raise WriterStateError(f"episode {self.index}: cannot {what}, the episode is already {self._state}")

    def _raise_if_flush_failed(self) -> None:
        if any(f.done() and f.exception() is not None for f, _ in self._inflight):
            self._guard(self._wait_pending)

    def _guard(self, step: Callable[[], None]) -> None:
        """Run a write step; an I/O failure leaves the writer failed (only discard remains)."""
        try:
            step()
        except StoreError as exc:
            self._fail(str(exc))
            raise
        except Exception as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            raise WriterStateError(
                f"episode {self.index}: writing frames failed ({type(exc).__name__}: {exc}); discard it"
            ) from exc

    def _fail(self, why: str) -> None:
        if self._state == "open":
            self._state = "failed"
            self._failure = why

    def _wait_pending(self, keep: int = 0) -> None:
        """Wait (oldest first) until at most `keep` chunk writes are in flight; re-raise a failure."""
        while len(self._inflight) > keep or (self._inflight and self._inflight[0][0].done()):
            future, window = self._inflight.popleft()
            self._free.append(window)
            future.result()

    def _flush(self) -> None:
        """Hand the current window to the background writer and start the next one."""
        win = self._window
        if win is None or win.length == 0:
            return
        assert self._schema is not None
        if self._schema_is_new:
            self._arrays.fix_schema(self._schema)
            self._schema_is_new = False
        self._arrays.ensure_real_arrays(length=win.start)
        for modality in win.rewards:
            self._arrays.ensure_reward_array(modality, length=win.start)
        arrays = self._arrays.frame_arrays()
        n = win.length
        block: dict[str, np.ndarray] = {}
        for key in arrays:
            if key in win.arrays:
                block[key] = win.arrays[key][:n]
            else:
                modality = key.rsplit("/", 1)[1]
                block[key] = win.rewards[modality][:n] if modality in win.rewards else np.full(n, np.nan, np.float32)
        if self._executor is None:
            # One worker: chunks are written in order, so array resizes never race.
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"episode-{self.index}-flush")
        future = self._executor.submit(self._write, arrays, win.start, block)
        self._inflight.append((future, win))
        self._wait_pending(keep=MAX_CHUNKS_IN_FLIGHT)
        self._window = self._free.pop() if self._free else _Window(self._schema, self._arrays.chunk_frames)
        self._window.reset(win.start + n)

    def _write(self, arrays: dict, start: int, block: dict[str, np.ndarray]) -> None:
        """On the flush thread: checksum the rows, then write them (step 1 of the commit protocol)."""
        offset = start - self.start
        for key, rows in block.items():
            if key not in self._digests and offset:
                # A reward array created during this episode: its earlier frames read as its fill, NaN.
                self._digests.update(key, np.full(offset, np.nan, np.float32))
            self._digests.update(key, rows)
        self._arrays.write_frames(arrays, start, block)

    def _close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._window = None
        self._free.clear()
