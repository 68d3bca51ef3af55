"""Errors raised by the episode store.

Every message is one line and names the culprit (the path, camera, field or
frame), because these errors surface in an operator's terminal mid-session,
where a traceback is noise and a vague message costs a recording.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class: anything the episode store refuses or cannot do."""


class InvalidEpisodeError(StoreError, ValueError):
    """An episode, frame or metadata field does not fit the store's schema."""


class NotAStoreError(StoreError):
    """A path exists but does not hold an lrm-robot episode store."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A store opened read-only does not exist."""


class StoreLockedError(StoreError):
    """Another process holds the single-writer lock."""


class ReadOnlyStoreError(StoreError):
    """A write was attempted through a store opened with mode='r'."""


class EpisodeIndexError(StoreError, IndexError):
    """An episode index is outside the committed episodes."""


class WriterStateError(StoreError):
    """An episode writer was used after commit/discard, or after a failed write."""


class StoreExistsError(StoreError, FileExistsError):
    """EpisodeStore.create was given a path that already holds a store."""


class DamagedEpisodeError(StoreError):
    """A committed episode's metadata or data is damaged: it is quarantined, never read as if intact."""
