"""The quarantine: damaged committed episodes that readers skip, and the record that remembers them.

Damage is never repaired by deleting. A damaged committed episode keeps its
index and its bytes; readers leave it out of `episodes()` and refuse it by
index with one line. Two kinds of damage (`Damage.kind`):

- "structure", found from the metadata alone (`recordings.recovery.scan`): a
  garbled or missing episode JSON, an unsettled frame range, an array that
  stops short. Every open finds it again, and stops finding it once mended.
- "data", found only by reading frames (`recordings.integrity`): a checksum
  mismatch, a chunk that cannot be decoded. The record, `meta/quarantine.json`,
  remembers it, so that every later reader skips the episode without reading
  it again, until `verify` finds it intact again (restored by hand).

The record is written only under the writer lock (a writer, or `verify` for a
moment); a reader that finds damage without the lock skips it on its own.
An undecodable chunk that a writer must rewrite is moved to
`meta/quarantine/`, never deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from recordings import layout
from recordings.episode import utc_now_iso
from recordings.errors import DamagedEpisodeError
from recordings.integrity import Damage, index_ranges

log = logging.getLogger(__name__)

RECORD_FILE = "meta/quarantine.json"
CHUNK_DIR = "meta/quarantine"  # chunk files set aside because they could not be decoded
RECORD_TAG = "lrm-robot-quarantine"


class Quarantine:
    """The damaged episodes of one open store: the record on disk, plus what this process found."""

    def __init__(self, root: Path, *, durable: bool, writable: bool) -> None:
        self.root = root
        self.durable = durable
        self.writable = writable  # the writer lock is held: what is found goes into the record
        self.record: dict[int, Damage] = {}  # as on disk
        self.damaged: dict[int, Damage] = {}  # what readers skip
        self._found: dict[int, Damage] = {}  # found by this process and not recorded (no lock)
        self._warned: set[int] = set()
        self._lock = threading.Lock()  # damage may be found by a writer's flush thread too

    def load(self, committed: int, structural: Mapping[int, tuple[str, str]]) -> dict[int, Damage]:
        """Re-read the record and merge it with the structural damage a scan found; returns what readers skip."""
        self.record = {i: d for i, d in read_record(self.root).items() if i < committed}
        # The record's own entries of structural damage may be stale: the scan is what counts.
        damaged = {i: d for i, d in self.record.items() if d.kind == "data"}
        damaged.update({i: d for i, d in self._found.items() if i < committed})
        damaged.update({i: self._structural(i, where, why) for i, (where, why) in structural.items()})
        self.damaged = dict(sorted(damaged.items()))
        return self.damaged

    def _structural(self, index: int, where: str, why: str) -> Damage:
        """Damage a scan found, keeping the date of the record's entry when that says the same."""
        old = self.record.get(index)
        if old is not None and (old.where, old.why, old.kind) == (where, why, "structure"):
            return old
        return Damage(index, where, why, "structure")

    def warn_skipped(self) -> None:
        """One line whenever what readers skip changes, naming the episodes: none is left out silently.

        Called where episodes are listed (`EpisodeStore.episodes`), not where one is
        asked for by index: that one is refused with its own line instead."""
        if set(self.damaged) == self._warned:
            return
        self._warned = set(self.damaged)
        if self.damaged:
            shown = "; ".join(str(d) for d in list(self.damaged.values())[:3])
            more = f"; and {len(self.damaged) - 3} more" if len(self.damaged) > 3 else ""
            log.warning(
                "%s: damaged episodes %s are quarantined and skipped by readers (%s%s); "
                "`lrm-robot store verify %s` lists them",
                self.root, index_ranges(self.damaged), shown, more, self.root,
            )

    def report(self, damage: Damage) -> DamagedEpisodeError:
        """Quarantine an episode found damaged while reading it; returns the error that refuses it.

        Not logged here: the reader that met it either stops with that error's one
        line or says in one line that it goes on without the episode."""
        with self._lock:
            self.damaged[damage.index] = damage
            if self.writable:
                self.record[damage.index] = damage
                write_record(self.root, self.record, durable=self.durable)
            else:
                self._found[damage.index] = damage
        log.debug("%s: %s; quarantined", self.root, damage)
        return self.refusal(damage)

    def refusal(self, damage: Damage) -> DamagedEpisodeError:
        return DamagedEpisodeError(
            f"{self.root}: episode {damage.index} is damaged ({damage.where}: {damage.why}); "
            f"it is quarantined, `lrm-robot store verify {self.root}` lists what is damaged"
        )

    def settle(self, found: Mapping[int, Damage], checked: set[int], *, write: bool) -> str:
        """Make the quarantine say what reading the episodes `checked` found (`found`: the damaged ones).

        With `write` (the writer lock held) the record is replaced for those
        episodes, which also releases one found intact again; without, only
        this process skips what was found. Returns what happened, for a report.
        Call `load` afterwards.
        """
        record = {i: d for i, d in self.record.items() if i not in checked}
        record.update(found)
        same = _entries(record) == _entries(self.record)
        with self._lock:
            for i in checked:
                self._found.pop(i, None)
            if not write:
                self._found.update(found)
            elif not same:
                write_record(self.root, record, durable=self.durable)
        if same:
            return "the quarantine record is unchanged"
        if not write:
            return "the quarantine record was not written"
        return f"the quarantine record now lists {_listing(record)}"

    def after_repair(self) -> list[str]:
        """A writer's record after its repair: the data damage it keeps plus the structural damage left."""
        record = {i: d for i, d in self.record.items() if d.kind == "data"}
        record.update({i: d for i, d in self.damaged.items() if d.kind == "structure"})
        if _entries(record) == _entries(self.record):
            return []
        write_record(self.root, record, durable=self.durable)
        self.record = record
        return [f"the quarantine record lists {_listing(record)} (kept, not removed)"]


def _listing(record: Mapping[int, Damage]) -> str:
    return f"episodes {index_ranges(record)}" if record else "no episodes"


def _entries(record: Mapping[int, Damage]) -> dict[int, tuple[str, str, str]]:
    """What a record says, without the dates: to tell whether it changed."""
    return {i: (d.where, d.why, d.kind) for i, d in record.items()}


def read_record(root: Path) -> dict[int, Damage]:
    """The quarantine record; an unreadable one counts as empty (verify finds its data damage again)."""
    doc = layout.read_json(root / RECORD_FILE)
    if not doc or doc.get("format") != RECORD_TAG or not isinstance(doc.get("episodes"), dict):
        return {}
    found: dict[int, Damage] = {}
    for key, entry in doc["episodes"].items():
        if str(key).isdigit() and isinstance(entry, dict):
            fields = [str(entry.get(name, "?")) for name in ("where", "why", "kind", "found")]
            found[int(key)] = Damage(int(key), *fields)
    return found


def write_record(root: Path, damage: Mapping[int, Damage], *, durable: bool) -> None:
    """Replace the quarantine record atomically; only with the writer lock held."""
    episodes = {
        str(i): {"where": d.where, "why": d.why, "kind": d.kind, "found": d.found} for i, d in sorted(damage.items())
    }
    layout.write_json_atomic(root / RECORD_FILE, {"format": RECORD_TAG, "episodes": episodes}, durable=durable)


def set_aside(root: Path, chunk_file: Path) -> Path:
    """Move an undecodable chunk file into the quarantine folder, keeping its bytes for a person to look at."""
    target_dir = root / CHUNK_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    name = chunk_file.relative_to(root).as_posix().replace("/", "__")
    target = target_dir / f"{name}.{utc_now_iso().replace(':', '')}"
    chunk_file.rename(target)
    return target
