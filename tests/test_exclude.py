"""What indexing skips: --exclude globs, .lookalikeignore files, hidden files and the litter
operating systems and NAS boxes leave in photo folders."""

from __future__ import annotations

import shutil

import lookalike
from conftest import caltech_image
from lookalike import cli
from lookalike.discovery import discover, is_ignored


def _tree(root):
    """A photo folder with the usual litter, and two real photos that must be found."""
    photo = caltech_image("watch", 1)
    files = [
        "keep/a.jpg", "keep/raw/b.jpg", "keep/.hidden.jpg", "keep/._a.jpg", ".cache/c.jpg",
        "@eaDir/a.jpg/SYNOPHOTO_THUMB_M.jpg", ".thumbnails/normal/x.png", "$RECYCLE.BIN/d.jpg",
        "keep/Thumbs.db", "keep/.DS_Store", "drafts/e.jpg", "keep/f.tmp.jpg", "keep/raw/g.jpg",
    ]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, root / name)
    return root


def _found(root, **kw):
    return sorted(s.location[len(str(root)) + 1:] for s in discover([root], **kw))


def test_hidden_files_and_litter_are_skipped(tmp_path):
    root = _tree(tmp_path / "photos")
    assert _found(root) == ["drafts/e.jpg", "keep/a.jpg", "keep/f.tmp.jpg", "keep/raw/b.jpg",
                            "keep/raw/g.jpg"]
    # A file given by name is indexed even when hidden.
    assert [s.location for s in discover([root / "keep" / ".hidden.jpg"])] == [str(root / "keep/.hidden.jpg")]


def test_globs_and_ignore_files(tmp_path):
    root = _tree(tmp_path / "photos")
    # A name glob matches at any depth; a glob with a slash matches the relative path.
    assert _found(root, globs=["*.tmp.jpg", "drafts"]) == ["keep/a.jpg", "keep/raw/b.jpg", "keep/raw/g.jpg"]
    assert _found(root, globs=["keep/raw/*"]) == ["drafts/e.jpg", "keep/a.jpg", "keep/f.tmp.jpg"]
    assert _found(root, globs=[str(root / "keep") + "/*"]) == ["drafts/e.jpg"]
    # .lookalikeignore: comments and blank lines skipped, globs relative to its folder.
    (root / "keep" / ".lookalikeignore").write_text("# raw files\n\nraw/g.jpg\n*.tmp.jpg\n")
    assert _found(root) == ["drafts/e.jpg", "keep/a.jpg", "keep/raw/b.jpg"]
    assert is_ignored(str(root / "keep/raw/g.jpg"), [root])
    assert is_ignored(str(root / "@eaDir/a.jpg/SYNOPHOTO_THUMB_M.jpg"), [root])
    assert not is_ignored(str(root / "keep/raw/b.jpg"), [root])


def test_exclude_through_the_cli_prunes_what_it_now_excludes(tmp_path, capsys):
    root = _tree(tmp_path / "photos")
    db = str(tmp_path / "db")
    assert cli.main(["index", str(root), "--db", db]) == 0
    with lookalike.Index.open(db, create=False) as index:
        assert len(index.catalogue.files_by_location()) == 5
    capsys.readouterr()
    assert cli.main(["index", str(root), "--db", db, "--exclude", "raw", "--exclude", "drafts"]) == 0
    assert "3 removed" in capsys.readouterr().out
    with lookalike.Index.open(db, create=False) as index:
        kept = sorted(loc[len(str(root)) + 1:] for loc in index.catalogue.files_by_location())
        assert kept == ["keep/a.jpg", "keep/f.tmp.jpg"]
