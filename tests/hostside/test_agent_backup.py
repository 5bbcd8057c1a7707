"""BackupStore.backup with `expect`: the kernel copy of exactly the planned-on bytes, and its
fallbacks (no copy_file_range, a file that changed since it was read), on real files."""
import hashlib
import os

import pytest

from fleet.hostside import fsutil


def _write(path, data, mode=0o600):
    path.write_bytes(data)
    os.chmod(str(path), mode)
    return path


@pytest.mark.parametrize("kernel", [True, False])
def test_kernel_copy_copies_the_prefix_and_reports_a_short_source(tmp_path, monkeypatch, kernel):
    if not kernel:
        monkeypatch.delattr(os, "copy_file_range", raising=False)   # the pread/pwrite path
    data = os.urandom(3 * fsutil.CHUNK + 12345)
    src = _write(tmp_path / "src", data)
    out = tmp_path / "out"
    with open(str(src), "rb") as s, open(str(out), "wb") as o:
        assert fsutil.kernel_copy(s.fileno(), o.fileno(), len(data) - 100) == len(data) - 100
    assert out.read_bytes() == data[:-100]
    with open(str(src), "rb") as s, open(str(out), "wb") as o:
        assert fsutil.kernel_copy(s.fileno(), o.fileno(), len(data) + 500) == len(data)
    assert out.read_bytes() == data


def test_expected_bytes_are_backed_up_exactly_even_after_an_append(tmp_path):
    planned = b'{"type":"session"}\n' + b"x" * 5000 + b"\n"
    src = _write(tmp_path / "s.jsonl", planned + b"appended later\n")
    store = fsutil.BackupStore(str(tmp_path / "backups"))
    rec = store.backup(str(src), "s.jsonl", expect=(len(planned), hashlib.sha256(planned).hexdigest()))
    assert open(rec["path"], "rb").read() == planned
    assert rec["bytes"] == len(planned) and rec["sha256"] == hashlib.sha256(planned).hexdigest()
    assert os.stat(rec["path"]).st_mode & 0o777 == 0o600
    assert not [n for n in os.listdir(os.path.dirname(rec["path"])) if n.endswith(".part")]


@pytest.mark.parametrize("change", ["rewritten", "shrunk"])
def test_a_file_that_no_longer_holds_the_expected_bytes_is_copied_as_it_is(tmp_path, change):
    planned = b'{"type":"session"}\n' + b"y" * 3000 + b"\n"
    now = planned.replace(b"y", b"z", 1) if change == "rewritten" else planned[:1000]
    src = _write(tmp_path / "s.jsonl", now)
    store = fsutil.BackupStore(str(tmp_path / "backups"))
    rec = store.backup(str(src), "s.jsonl", expect=(len(planned), hashlib.sha256(planned).hexdigest()))
    # The record describes what was really copied, so the caller sees the change and plans again.
    assert open(rec["path"], "rb").read() == now
    assert rec["sha256"] == hashlib.sha256(now).hexdigest() != hashlib.sha256(planned).hexdigest()
    assert not [n for n in os.listdir(os.path.dirname(rec["path"])) if n.endswith(".part")]
