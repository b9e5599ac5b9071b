"""Files written whole or not at all: a full disk, a read-only filesystem or a missing folder
raises an OSError naming the file asked for, keeps the old file, and leaves no temporary."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from test_engine_file import fake_plan, sample_info

from trtfast import _files, engine_file
from trtfast.build import TimingCacheFile


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the disk fills up while a file is flushed (where a filesystem with
    delayed allocation reports it)."""

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)


def test_a_full_disk_keeps_the_old_file_and_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "model.engine"
    target.write_bytes(b"old")
    full_disk(monkeypatch)
    with pytest.raises(OSError) as raised:
        _files.atomic_write(target, b"new", b"er")
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(target)
    assert str(target) in str(raised.value)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.engine"]


def test_a_missing_folder_names_the_target(tmp_path):
    target = tmp_path / "missing" / "model.engine"
    with pytest.raises(FileNotFoundError) as raised:
        _files.atomic_write(target, b"data")
    assert raised.value.filename == str(target)


def test_parts_are_written_in_order_and_replace_the_old_file(tmp_path):
    target = tmp_path / "plan"
    _files.atomic_write(target, b"old")
    _files.atomic_write(target, b"he", b"", b"ader", b"plan")
    assert target.read_bytes() == b"headerplan"
    assert os.listdir(tmp_path) == ["plan"]


def test_the_timing_cache_loads_without_a_lock_and_saving_fails_cleanly(tmp_path, monkeypatch):
    cache = TimingCacheFile(tmp_path / "model.timing")
    assert cache.load() is None
    assert os.listdir(tmp_path) == []  # loading creates nothing, not even the lock file
    cache.save(b"first", None, None)
    full_disk(monkeypatch)
    with pytest.raises(OSError) as raised:
        cache.save(b"second", b"first", None)
    assert raised.value.errno == errno.ENOSPC
    assert cache.load() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["model.timing", "model.timing.lock"]


def can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


READ_ONLY_WRITES = textwrap.dedent(
    """
    import errno, os, sys
    from trtfast import engine_file
    from trtfast.build import TimingCacheFile

    folder = sys.argv[1]
    info = engine_file.EngineInfo(
        format_version=0, tensorrt_version="11.4.0", edition="standard", gpu_name="GPU",
        compute_capability=(9, 0), inputs=(), outputs=(), build_options={},
        model_sha256="", plan_sha256="", plan_size=0, raw_plan=False, host_code=False,
    )
    attempts = {
        "engine": lambda: engine_file.write(os.path.join(folder, "m.engine"), info, b"ftrt plan"),
        "export": lambda: engine_file.export_plan(sys.argv[2], os.path.join(folder, "m.plan")),
        "timing cache": lambda: TimingCacheFile(os.path.join(folder, "t")).save(b"c", None, None),
    }
    for what, attempt in attempts.items():
        try:
            attempt()
        except OSError as error:
            assert error.errno == errno.EROFS, (what, error)
            assert folder in str(error), (what, error)
            print(what, "refused:", error)
        else:
            raise AssertionError(f"{what} was written to a read-only filesystem")
    assert os.listdir(folder) == ["kept"], os.listdir(folder)
    """
)


@pytest.mark.skipif(not can_mount_read_only(), reason="needs unshare and user namespaces")
def test_a_read_only_filesystem_refuses_every_write_cleanly(tmp_path):
    # A real read-only mount in a private mount namespace: chmod does not stop root.
    source = tmp_path / "source.engine"
    engine_file.write(source, sample_info(), fake_plan(b"plan"))
    folder = tmp_path / "read-only"
    folder.mkdir()
    (folder / "kept").write_bytes(b"kept")
    script = (
        f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && "
        f'exec "{sys.executable}" -c "$0" "{folder}" "{source}"'
    )
    result = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", script, READ_ONLY_WRITES],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("refused: [Errno 30]") == 3, result.stdout
    assert os.listdir(folder) == ["kept"]


def test_a_symbolic_link_is_written_through_and_kept(tmp_path):
    real = tmp_path / "store" / "model.engine"
    real.parent.mkdir()
    real.write_bytes(b"old")
    link = tmp_path / "model.engine"
    link.symlink_to(real)
    _files.atomic_write(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"
    assert sorted(os.listdir(real.parent)) == ["model.engine"]


def test_an_existing_file_keeps_its_mode_and_group(tmp_path):
    path = tmp_path / "model.engine"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    groups = os.getgroups()
    group = groups[-1] if groups else os.getgid()
    os.chown(path, -1, group)
    _files.atomic_write(path, b"new")
    status = os.stat(path)
    assert status.st_mode & 0o7777 == 0o640
    assert status.st_gid == group
    # A new file gets the umask's mode, as open() gives it.
    umask = os.umask(0)
    os.umask(umask)
    _files.atomic_write(tmp_path / "new.engine", b"new")
    assert os.stat(tmp_path / "new.engine").st_mode & 0o777 == 0o666 & ~umask


def test_two_names_of_one_timing_cache_share_one_lock(tmp_path):
    real = tmp_path / "caches" / "model.timing"
    real.parent.mkdir()
    link = tmp_path / "model.timing"
    link.symlink_to(real)
    assert TimingCacheFile(link).lock_path == TimingCacheFile(real).lock_path
    TimingCacheFile(link).save(b"entries", None, None)
    assert link.is_symlink() and real.read_bytes() == b"entries"
