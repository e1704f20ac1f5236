"""Safe extraction on crafted archives: every unsafe member kind is refused before anything lands in the target,
archive bombs hit the limits, a checksum mismatch is refused before extraction, and a failed or interrupted
extraction leaves no folder that could be taken for a complete one."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

import pytest

from metaprompt_hf.data import extraction
from metaprompt_hf.data.extraction import (
    EXTRACTED_MARKER,
    ExtractionError,
    ExtractionLimits,
    is_complete,
    read_marker,
    safe_extract,
    sha256_file,
)


def _zip(path, members: dict[str, bytes], modes: dict[str, int] | None = None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.create_system = 3
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def _tar(path, entries):
    """entries: (name, kind, payload): kind 'file' (bytes), 'dir', 'sym' / 'hard' (link target), 'chr', 'fifo'."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            data = None
            if kind == "file":
                info.size, data = len(payload), io.BytesIO(payload)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, payload
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, payload
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            tf.addfile(info, data)
    return path


def _nothing_left(tmp_path, target):
    assert not os.path.lexists(target)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(f".{os.path.basename(target)}")]


def test_zip_and_tar_extract_with_a_marker_and_the_selected_folder(tmp_path):
    z = _zip(tmp_path / "a.zip", {"ds/split.json": b"{}", "ds/img/1.jpg": b"x" * 10})
    out = safe_extract(z, tmp_path / "ds", select=lambda root: root / "ds")
    assert (out / "img" / "1.jpg").read_bytes() == b"x" * 10 and is_complete(out)
    assert read_marker(out)["sha256"] == sha256_file(z) and read_marker(out)["members"] == 2
    t = _tar(tmp_path / "b.tar.gz", [("d", "dir", None), ("d/f.txt", "file", b"hi"), ("d/g.txt", "hard", "d/f.txt")])
    out = safe_extract(t, tmp_path / "tb", marker={"dataset": "x"})
    assert (out / "d" / "g.txt").read_bytes() == b"hi" and not os.path.islink(out / "d" / "g.txt")
    assert read_marker(out)["dataset"] == "x"
    with pytest.raises(ExtractionError, match="already complete"):
        safe_extract(t, out)


@pytest.mark.parametrize(
    ("members", "pattern"),
    [
        ({"../evil.txt": b"x"}, r"outside the target folder \('\.\.'\)"),
        ({"ok/../../evil.txt": b"x"}, r"'\.\.'"),
        ({"/tmp/evil.txt": b"x"}, "absolute path"),
        ({"C:/evil.txt": b"x"}, "absolute path"),
        ({"a\\..\\..\\evil.txt": b"x"}, r"'\.\.'"),
    ],
)
def test_zip_paths_outside_the_target_are_refused(tmp_path, members, pattern):
    z = _zip(tmp_path / "bad.zip", {"fine.txt": b"ok", **members})
    with pytest.raises(ExtractionError, match=pattern):
        safe_extract(z, tmp_path / "out")
    _nothing_left(tmp_path, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not os.path.exists("/tmp/evil.txt")


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        ([("link", "sym", "/etc")], "symlink 'link' -> '/etc' points outside"),
        ([("d/link", "sym", "../../x")], "points outside"),
        ([("d", "dir", None), ("d/in", "sym", "."), ("d/in/f", "file", b"x")], "through the symlink 'd/in'"),
        ([("h", "hard", "/etc/passwd")], "hard link 'h' -> '/etc/passwd'"),
        ([("h", "hard", "../outside")], "hard link"),
        ([("h", "hard", "later"), ("later", "file", b"x")], "earlier file"),
        ([("dev", "chr", None)], "device file"),
        ([("pipe", "fifo", None)], "device file, FIFO"),
        ([("f", "file", b"a"), ("f", "file", b"b")], "appears twice"),
        ([("../up", "file", b"a")], r"'\.\.'"),
    ],
)
def test_tar_links_devices_and_duplicates_are_refused(tmp_path, entries, pattern):
    t = _tar(tmp_path / "bad.tar.gz", [("fine.txt", "file", b"ok"), *entries])
    with pytest.raises(ExtractionError, match=pattern):
        safe_extract(t, tmp_path / "out")
    _nothing_left(tmp_path, tmp_path / "out")


def test_zip_symlink_out_and_fifo_mode_are_refused(tmp_path):
    z = _zip(tmp_path / "sym.zip", {"link": b"/etc/passwd"}, {"link": stat.S_IFLNK | 0o777})
    with pytest.raises(ExtractionError, match="points outside"):
        safe_extract(z, tmp_path / "out")
    z = _zip(tmp_path / "fifo.zip", {"p": b""}, {"p": stat.S_IFIFO | 0o644})
    with pytest.raises(ExtractionError, match="device file, FIFO"):
        safe_extract(z, tmp_path / "out")
    inside = _zip(tmp_path / "ok.zip", {"a.txt": b"hi", "l": b"a.txt"}, {"l": stat.S_IFLNK | 0o777})
    out = safe_extract(inside, tmp_path / "ok")
    assert os.readlink(out / "l") == "a.txt" and (out / "l").read_bytes() == b"hi"


def test_archive_bombs_hit_the_limits(tmp_path):
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(4 * 2**20)})
    with pytest.raises(ExtractionError, match="ratio over the limit"):
        safe_extract(bomb, tmp_path / "out", limits=ExtractionLimits(max_ratio=100))
    with pytest.raises(ExtractionError, match="ratio over the limit 1000"):  # the default catches deflate's best
        safe_extract(bomb, tmp_path / "out")
    big = _zip(tmp_path / "big.zip", {"noise.bin": os.urandom(2 * 2**20)})
    with pytest.raises(ExtractionError, match="unpacks to 2097152 bytes, over the limit of 1048576"):
        safe_extract(big, tmp_path / "out", limits=ExtractionLimits(max_total_bytes=2**20))
    many = _tar(tmp_path / "many.tar.gz", [(f"f{i}", "file", b"") for i in range(50)])
    with pytest.raises(ExtractionError, match="50 members, over the limit of 10"):
        safe_extract(many, tmp_path / "out", limits=ExtractionLimits(max_members=10))
    _nothing_left(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="max_ratio: must be a finite number > 0"):
        ExtractionLimits(max_ratio=float("inf"))


def test_checksum_mismatch_is_refused_before_extraction(tmp_path, monkeypatch):
    z = _zip(tmp_path / "a.zip", {"f": b"x"})
    opened = []
    monkeypatch.setattr(extraction, "_open_archive", lambda p: opened.append(p))
    with pytest.raises(ExtractionError, match="checksum mismatch .* expected 0000"):
        safe_extract(z, tmp_path / "out", sha256="0" * 64)
    assert opened == []  # the archive was never opened
    _nothing_left(tmp_path, tmp_path / "out")


def test_failed_or_interrupted_extraction_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    z = _zip(tmp_path / "a.zip", {"a": b"1", "b": b"2", "c": b"3"})

    def refuse(staged):
        assert (staged / "a").is_file() and not (staged / EXTRACTED_MARKER).exists()
        raise ExtractionError("the reader refused it")

    with pytest.raises(ExtractionError, match="reader refused"):
        safe_extract(z, tmp_path / "out", validate=refuse)
    _nothing_left(tmp_path, tmp_path / "out")

    calls = []
    real = extraction._copy_limited

    def crash_on_second(*args):
        calls.append(args[-1])
        if len(calls) == 2:
            raise KeyboardInterrupt  # an interrupted run
        return real(*args)

    monkeypatch.setattr(extraction, "_copy_limited", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(z, tmp_path / "out")
    _nothing_left(tmp_path, tmp_path / "out")
    # A folder from elsewhere (or a torn copy) has no marker: never complete, and never extracted over.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_bytes(b"1")
    assert not is_complete(tmp_path / "out")
    monkeypatch.setattr(extraction, "_copy_limited", real)
    with pytest.raises(ExtractionError, match="without a completion marker"):
        safe_extract(z, tmp_path / "out")
