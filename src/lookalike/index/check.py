"""``lookalike check``: whether an index folder is whole and consistent, and its repair.

The catalogue is checked by SQLite (``PRAGMA integrity_check``, rows pointing at missing
images), then its format and model id; every derived file against it: the vector store
holds a vector for exactly the catalogue's images, the neighbour graph and the word index
hold the catalogue's ids and link only ids they hold. A derived file that follows an older
catalogue generation is no problem (the next use brings it level by id). Each problem is
one line.

``repair`` deletes the derived files and rebuilds them through the normal open path. A
damaged catalogue is first read back row by row into a fresh one (the old file is kept as
``catalogue.sqlite.damaged``): an image whose rows cannot all be read is dropped with its
files, which the next ``lookalike index`` of their folders embeds again. What is lost is
listed, by the check already.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import IndexFormatError, LookalikeError, ModelError, ReadOnlyIndexError
from ..settings import Settings
from . import schema
from .ann import AnnStore, CatalogueVectors
from .catalogue import Catalogue
from .files import load_with_meta, read_only_reason
from .folder import CATALOGUE_FILE, FIXED_SETTINGS, IndexFolder
from .graph import KnnGraph
from .milvus_store import REMOTE_STORE_KEY, MilvusStore
from .transform import Transform
from .vectors import FlatStore
from .words import InvertedFile, shipped_vocabulary

DERIVED = (*FlatStore.FILES, *AnnStore.FILES, KnnGraph.FILE, InvertedFile.FILE, *MilvusStore.FILES)
LISTED = 10  # lost files named one by one; the rest are counted


@dataclass
class CheckReport:
    """What a check found (``problems``, one line each; ``notes`` are no problem), what a
    damaged catalogue has lost, and what a repair did and found after it (``remaining``)."""

    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    remaining: list[str] | None = None  # None: no repair was run

    @property
    def healthy(self) -> bool:
        return not (self.problems if self.remaining is None else self.remaining)

    def as_dict(self) -> dict:
        return {"path": self.path, "healthy": self.healthy, "problems": self.problems,
                "notes": self.notes, "lost": self.lost, "repaired": self.repaired,
                "remaining": self.remaining}


@dataclass
class Salvage:
    """What a damaged catalogue still holds: rows per table (``schema.COLUMNS`` order)."""

    tables: dict[str, list[tuple]] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    usable: bool = True  # False: not even the index's settings could be read


def check_index(path: str | os.PathLike, settings: Settings | None = None, *,
                repair: bool = False) -> CheckReport:
    """Check the index folder at ``path``; with ``repair``, fix what was found and check again."""
    folder = Path(path).expanduser().absolute()
    if not (folder / CATALOGUE_FILE).exists():
        raise IndexFormatError(f"no index at {folder}")
    settings = settings or Settings()
    report = CheckReport(str(folder))
    salvage = _examine(folder, settings, report)
    if repair and report.problems:
        reason = read_only_reason(folder, folder / CATALOGUE_FILE)
        if reason:
            raise ReadOnlyIndexError(f"the index at {folder} is read-only: {reason}")
        if salvage is not None and salvage.usable:
            _recover(folder, salvage, report)
        if salvage is None or salvage.usable:
            _rebuild(folder, settings, report)
        again = CheckReport(str(folder))
        _examine(folder, settings, again)
        report.remaining = again.problems
    return report


# --- the catalogue ------------------------------------------------------------------------
def _examine(folder: Path, settings: Settings, report: CheckReport) -> Salvage | None:
    """Check the folder into ``report``; returns what a damaged catalogue still holds."""
    path = folder / CATALOGUE_FILE
    try:
        db = schema.connect(path, readonly=True)
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"catalogue: cannot be opened ({exc})")
        report.lost.append("everything: index the folders again into a new --db")
        return Salvage(usable=False)
    try:
        try:
            found = schema.findings(db)
        except sqlite3.DatabaseError as exc:
            found = [str(exc)]
        if found:
            report.problems.extend(f"catalogue: {line}" for line in found)
            salvage = read_back(db)
            report.lost.extend(salvage.lost)
            report.notes.append("derived files: not checked while the catalogue is damaged")
            return salvage
    finally:
        db.close()
    try:
        catalogue = Catalogue(path, readonly=True)
    except LookalikeError as exc:
        report.problems.append(f"catalogue: {exc}")
        return None
    try:
        settings = _check_format(catalogue, settings, report)
        _check_derived(folder, catalogue, settings, report)
    finally:
        catalogue.close()
    return None


def _check_format(catalogue: Catalogue, settings: Settings, report: CheckReport) -> Settings:
    """Format version and model id; returns ``settings`` with the index's fixed ones."""
    from ..embed.embedder import Embedder

    if catalogue.version < Catalogue.VERSION:
        report.notes.append(f"catalogue: format {catalogue.version}, brought to format "
                            f"{Catalogue.VERSION} when next opened for writing")
    stored = catalogue.settings_json()
    if not all(key in stored for key in FIXED_SETTINGS):
        report.problems.append("catalogue: the index's settings (its model) are not recorded")
        return settings
    settings = settings.with_(**{key: stored[key] for key in FIXED_SETTINGS})
    try:
        computed = Embedder(settings).model_id
    except ModelError as exc:
        report.problems.append(f"model: {exc}")
        return settings
    recorded = catalogue.get_meta("model_id")
    if recorded != computed:
        report.problems.append(f"model: the index holds vectors of {recorded}, this lookalike "
                               f"computes {computed}: index into a new --db")
    return settings


def read_back(db: sqlite3.Connection) -> Salvage:
    """Every row of a damaged catalogue that can be read and makes sense, and what is lost:
    an image is kept only with its labels, local features and at least one file."""
    out = Salvage()
    meta = {k: v for k, v in schema.readable_rows(db, "meta")[0] if isinstance(k, str)}
    if "settings" not in meta:
        out.usable = False
        out.lost.append("the index's settings (its model) could not be read: "
                        "index the folders again into a new --db")
        return out
    images, image_gaps = schema.readable_rows(db, "images", "id")
    lengths = Counter(len(r[4]) for r in images if isinstance(r[4], bytes))
    length = lengths.most_common(1)[0][0] if lengths else 0
    valid = [r for r in images if schema.sound("images", r, length)]
    for first, last in image_gaps:
        out.lost.append(f"image rows {_span(first, last)} could not be read")
    if len(valid) < len(images):
        out.lost.append(f"{len(images) - len(valid)} image rows hold damaged values")
    ids = [r[0] for r in valid]
    labels, no_labels = schema.rows_of_images(db, "labels", ids)
    features, no_features = schema.rows_of_images(db, "local_features", ids)
    bad = {i for i, rows in features.items()
           if not all(schema.sound("local_features", row) for row in rows)}
    for what, missing in (("labels", no_labels), ("local features", [*no_features, *bad])):
        if missing:
            out.lost.append(f"the {what} of {len(missing)} images could not be read")
    keep = set(ids) - set(no_labels) - set(no_features) - bad
    files, file_gaps = schema.readable_rows(db, "files", "id")
    files = [f for f in files if schema.sound("files", f)]
    for first, last in file_gaps:
        out.lost.append(f"file rows {_span(first, last)} could not be read")
    gone = [f for f in files if f[2] not in keep]
    files = [f for f in files if f[2] in keep]
    orphans = keep - {f[2] for f in files}
    if orphans:
        out.lost.append(f"{len(orphans)} images lost: none of their file rows could be read")
    keep -= orphans
    if gone:
        out.lost.append(f"{len(gone)} files lost with their images (the next lookalike index "
                        "of their folders adds them again):")
        out.lost.extend(f"file {_shown(schema.read_location(f[1]))}" for f in gone[:LISTED])
        if len(gone) > LISTED:
            out.lost.append(f"and {len(gone) - LISTED} more files")
    seen = [*ids, *(f[2] for f in files), *(last for _, last in image_gaps if last is not None)]
    retired = max([int(meta.get("retired_image_id") or 0), *seen])
    generation = int(meta.get("generation") or 0) + 1  # nothing derived matches it
    fixed = {"format_version": str(schema.VERSION), "generation": str(generation),
             "retired_image_id": str(retired)}
    failures = [r for r in schema.readable_rows(db, "failures")[0] if isinstance(r[3], str)]
    indexed = {schema.read_location(f[1]) for f in files}  # (a URL's validators go with it)
    out.tables = {
        "meta": [*((k, v) for k, v in meta.items() if k not in fixed), *fixed.items()],
        "images": [r for r in valid if r[0] in keep],
        "labels": [row for i in sorted(keep) for row in labels.get(i, [])],
        "files": files,
        "local_features": [row for i in sorted(keep) for row in features.get(i, [])],
        "failures": failures,
        "not_duplicates": _rows_if_any(db, "not_duplicates"),
        "url_sources": [r for r in _rows_if_any(db, "url_sources") if r[0] in indexed],
    }
    return out


def _rows_if_any(db, table: str) -> list[tuple]:
    """The readable rows of a table an older catalogue may lack ([] then)."""
    try:
        return schema.readable_rows(db, table)[0]
    except LookupError:
        return []


def _recover(folder: Path, salvage: Salvage, report: CheckReport) -> None:
    """Write the salvaged rows into a new catalogue and put it in place of the damaged one,
    which is kept (with its -wal and -shm files) as ``catalogue.sqlite.damaged``."""
    path = folder / CATALOGUE_FILE
    fresh = folder / f"{CATALOGUE_FILE}.recovered"
    fresh.unlink(missing_ok=True)
    schema.write_catalogue(fresh, salvage.tables)
    kept, n = folder / f"{CATALOGUE_FILE}.damaged", 1
    while kept.exists():
        kept, n = folder / f"{CATALOGUE_FILE}.damaged.{n}", n + 1
    for suffix in ("", "-wal", "-shm"):  # a -wal left with the new file would be replayed
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{kept}{suffix}")
    os.replace(fresh, path)
    report.repaired.append(
        f"catalogue: {len(salvage.tables['images'])} images and {len(salvage.tables['files'])} "
        f"files recovered into a new catalogue; the damaged one is kept as {kept.name}")


def _rebuild(folder: Path, settings: Settings, report: CheckReport) -> None:
    """Delete the derived files (and temporary files left by interrupted writes) and build
    them again from the catalogue, as opening the index would."""
    present = {name for name in DERIVED if (folder / name).exists()}
    for path in [*(folder / name for name in present), *folder.glob("*.tmp*")]:
        path.unlink(missing_ok=True)
    index = IndexFolder.open(folder, settings, create=False)
    try:
        store = index.store
        report.repaired.append(f"vector store: rebuilt ({store.inner.kind}, {len(store)} images)")
        if KnnGraph.FILE in present:
            report.repaired.append(f"neighbour graph: rebuilt ({len(index.graph())} images)")
        if InvertedFile.FILE in present:
            report.repaired.append(f"word index: rebuilt ({len(index.word_index())} images)")
    finally:
        index.close()


# --- the derived files --------------------------------------------------------------------
def _check_derived(folder: Path, catalogue: Catalogue, settings: Settings,
                   report: CheckReport) -> None:
    ids = catalogue.image_ids()
    transform = Transform.from_json(catalogue.get_meta("transform"))
    if remote := catalogue.get_meta(REMOTE_STORE_KEY):  # (a server that is down: one error)
        held = MilvusStore.connect(remote, settings.milvus, catalogue).stored_ids()
        _same_ids(f"vector store ({remote})", held, ids, report)
    elif (folder / "ann.json").exists():
        _check_ann(folder, catalogue, transform, ids, settings, report)
    elif (folder / "flat.json").exists():
        _check_flat(folder, catalogue, transform, ids, report)
    else:
        report.problems.append("vector store: missing (no flat.json or ann.json)")
    _check_graph(folder, catalogue, transform, ids, report)
    _check_words(folder, catalogue, report)
    for path in sorted(folder.glob("*.tmp*")):
        report.problems.append(f"{path.name}: a temporary file left by an interrupted write")


def _check_flat(folder: Path, catalogue: Catalogue, transform: Transform, ids: np.ndarray,
                report: CheckReport) -> None:
    what = "vector store (flat)"
    try:
        saved = int(json.loads((folder / "flat.json").read_text())["generation"])
    except (OSError, ValueError, KeyError, TypeError):
        report.problems.append(f"{what}: flat.json is unreadable")
        return
    store = FlatStore.load(folder, saved)
    if store is None:
        report.problems.append(f"{what}: flat-ids.npy or flat-vectors.npy is missing, "
                               "unreadable or does not match flat.json")
    elif _level(what, saved, catalogue, report) and not _same_ids(what, store.ids, ids, report):
        sample = ids[:: max(1, len(ids) // 64)]
        expected = transform.apply(catalogue.vectors_for(sample.tolist())) if len(sample) else None
        got = store.vectors(sample) if len(sample) else None
        if expected is not None and (expected.shape != got.shape
                                     or not np.allclose(expected, got, atol=0.02)):
            report.problems.append(f"{what}: its vectors differ from the catalogue's descriptors")


def _check_ann(folder: Path, catalogue: Catalogue, transform: Transform, ids: np.ndarray,
               settings: Settings, report: CheckReport) -> None:
    what = "vector store (ann)"
    source = CatalogueVectors(catalogue, transform.apply)
    store = AnnStore(source, settings.ann, transform.fingerprint)
    meta = store.load_saved(folder)  # as AnnStore.open reads it, without its repair
    if meta is None:
        report.problems.append(f"{what}: ann.usearch, ann-codec.npy or ann.json is missing, "
                               "unreadable or inconsistent")
    elif meta.get("fingerprint") != store.fingerprint:
        report.notes.append(f"{what}: made for another descriptor transform: rebuilt on next use")
    elif _level(what, int(meta["generation"]), catalogue, report):
        _same_ids(what, store.ids(), ids, report)


def _check_graph(folder: Path, catalogue: Catalogue, transform: Transform, ids: np.ndarray,
                 report: CheckReport) -> None:
    what, path = "neighbour graph", folder / KnnGraph.FILE
    if not path.exists():
        return
    loaded = load_with_meta(path, ("ids", "neighbours", "sims"))
    if loaded is None:
        report.problems.append(f"{what}: {path.name} is unreadable")
        return
    arrays, saved = loaded
    held, links = arrays["ids"], arrays["neighbours"]
    if len(links) != len(held) or not np.isin(links[links >= 0], held).all():
        report.problems.append(f"{what}: it links images it does not hold")
    elif load_with_meta(path, ("ids",), fingerprint=transform.fingerprint) is None:
        report.notes.append(f"{what}: made for another descriptor transform: rebuilt on next use")
    elif _level(what, saved, catalogue, report):
        _same_ids(what, held, ids, report)


def _check_words(folder: Path, catalogue: Catalogue, report: CheckReport) -> None:
    what, path = "word index", folder / InvertedFile.FILE
    if not path.exists():
        return
    loaded = load_with_meta(path, ("ids", "postings", "starts", "norms"))
    if loaded is None:
        report.problems.append(f"{what}: {path.name} is unreadable")
        return
    arrays, saved = loaded
    held, postings, starts = arrays["ids"], arrays["postings"], arrays["starts"]
    if (len(arrays["norms"]) != len(held) or not len(starts) or starts[0] != 0
            or starts[-1] != len(postings) or np.any(np.diff(starts) < 0)
            or (len(postings) and (postings.min() < 0 or postings.max() >= len(held)))):
        report.problems.append(f"{what}: its postings do not match its images")
    elif load_with_meta(path, ("ids",), vocabulary=shipped_vocabulary().fingerprint) is None:
        report.notes.append(f"{what}: made with another vocabulary: rebuilt on next use")
    elif _level(what, saved, catalogue, report):
        _same_ids(what, held, catalogue.local_feature_ids(), report)


def _level(what: str, saved: int, catalogue: Catalogue, report: CheckReport) -> bool:
    """Whether a derived file claims the catalogue's generation (else a note: it is
    brought level by id on next use)."""
    if saved == catalogue.generation:
        return True
    report.notes.append(f"{what}: follows catalogue generation {saved}, now "
                        f"{catalogue.generation}: brought level on next use")
    return False


def _same_ids(what: str, held: np.ndarray, expected: np.ndarray, report: CheckReport) -> bool:
    """Whether ``held`` are exactly the ``expected`` ids (else a problem naming the rest)."""
    extra = np.setdiff1d(held, expected)
    missing = np.setdiff1d(expected, held)
    parts = [f"{len(extra)} ids the catalogue does not hold ({_few(extra)})"] if len(extra) else []
    if len(missing):
        parts.append(f"{len(missing)} catalogue images missing ({_few(missing)})")
    if len(held) != len(np.unique(held)):
        parts.append("ids held twice")
    if parts:
        report.problems.append(f"{what}: " + ", ".join(parts))
    return not parts


# --- wording ------------------------------------------------------------------------------
def _span(first: int, last: int | None) -> str:
    first = max(first, 0)
    if last is None:
        return f"from id {first} on"
    return f"with id {first}" if first == last else f"with ids {first}-{last}"


def _few(ids: np.ndarray) -> str:
    return ", ".join(str(int(i)) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")


def _shown(location: str) -> str:
    """A location printable anywhere: undecodable bytes of a file name as ``\\xNN``."""
    return os.fsencode(location).decode("utf-8", "backslashreplace")
