"""Reading committed episodes back against their checksums: the work behind `EpisodeStore.verify`.

Episodes whose metadata is damaged are reported as the store's scan found
them (there is no range or checksum to read them by); every other episode is
read one time-chunk at a time, all of its arrays, and each array's digest
compared with the one written at commit (`recordings.integrity`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from recordings import integrity
from recordings.arrays import StoreArrays
from recordings.episode import EpisodeRecord
from recordings.integrity import Damage, VerifyReport


def verify_episodes(
    arrays: StoreArrays,
    indices: Iterable[int],
    keys_of: Callable[[EpisodeRecord], list[str]],
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check the committed episodes `indices`; `keys_of(record)`: the arrays an episode has frames in."""
    report = VerifyReport(str(arrays.root), arrays.num_episodes, index_problems=list(arrays.scan.ends_problems))
    for i in indices:
        damage = _check(arrays, i, keys_of)
        if damage is not None:
            report.damaged[i] = damage
        elif arrays.expected_digests(i) is None:
            report.unverified.append(i)
        else:
            report.intact.append(i)
        if progress is not None:
            progress(arrays.whole[i].length if i in arrays.whole else 0)
    return report


def _check(arrays: StoreArrays, index: int, keys_of: Callable[[EpisodeRecord], list[str]]) -> Damage | None:
    if index in arrays.scan.damage:
        return arrays.damaged[index]
    rec = arrays.whole[index]
    problems = integrity.check_data(
        arrays.root,
        {k: arrays.frames.get(k) for k in keys_of(rec)},
        rec.start,
        rec.end,
        arrays.expected_digests(index),
        arrays.chunk_frames,
    )
    if not problems:
        return None
    where, why = problems[0]
    if len(problems) > 1:
        why += f" (also damaged: {', '.join(k for k, _ in problems[1:])})"
    old = arrays.damaged.get(index)
    same = old is not None and (old.where, old.why, old.kind) == (where, why, "data")
    return old if same else Damage(index, where, why)
