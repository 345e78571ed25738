"""Writes that never destroy (``nsiter._io``), table-driven, each case under an alarm.

Every case builds its own files under ``tmp_path``: device nodes are private ``mknod`` copies of /dev/null
(1, 3) and /dev/full (1, 7), never the real /dev (cases skip when ``mknod`` is not permitted).  For each
kind of path the tables state what the write does (written in place, target replaced, or refused with a
message naming the path and the cause), and the tests check the invariants: a device node or FIFO is
still one afterwards, a link is still a link, a refused write leaves every existing file unchanged and no
temporary file behind, and :func:`check_writable` refuses exactly what the write refuses (before it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import torch

import nsiter.bench
import nsiter.cli
from nsiter._io import WriteError, atomic_write, atomic_write_csv, check_writable
from nsiter.kernels import clear_cache, kernel_choice
from nsiter.registry import load_schedule
from nsiter.schedule import Schedule

CASE_SECONDS = 20  # every case answers in well under a second; a hang fails instead of blocking the suite
REPO = Path(__file__).resolve().parent.parent
NULL, FULL = (1, 3), (1, 7)  # Linux character device numbers of /dev/null and /dev/full
UNUSED_BLOCK = (7, 250)  # a loop device minor that nothing attaches: the node is never opened anyway


@pytest.fixture(autouse=True)
def alarm():
    def hung(signum, frame):
        raise TimeoutError(f"no answer within {CASE_SECONDS} s: a write blocked")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(CASE_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _mknod(path: Path, kind: int, numbers: tuple[int, int]) -> Path:
    try:
        os.mknod(path, kind | 0o666, os.makedev(*numbers))
    except (PermissionError, AttributeError) as err:
        pytest.skip(f"cannot create device nodes here ({err}): run as root to test devices")
    return path


def _chardev(d: Path, name: str, numbers: tuple[int, int]) -> Path:
    return _mknod(d / name, stat.S_IFCHR, numbers)


def _reader(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def _snapshot(d: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under ``d``: its file type and content (regular file), link text (link) or nothing."""
    out: dict[str, tuple[int, bytes | str | None]] = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        kind = stat.S_IFMT(st.st_mode)
        body: bytes | str | None = None
        if stat.S_ISLNK(st.st_mode):
            body = os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            body = p.read_bytes()
        out[str(p.relative_to(d))] = (kind, body)
    return out


# --- what each kind of path becomes -------------------------------------------------------------------
# (case, setup(d) -> the path given to the write, check(d, path) after writing DATA)
DATA = "a,b\n1,2\n"


def _link_to_file(d):
    (d / "t.csv").write_text("old")
    os.symlink("t.csv", d / "link.csv")
    return d / "link.csv"


def _chain(d):
    (d / "sub").mkdir()
    (d / "sub" / "t.csv").write_text("old")
    os.symlink("sub/t.csv", d / "l1")
    os.symlink("l1", d / "l2")
    return d / "l2"


def _dangling_into_existing(d):
    os.symlink("made.csv", d / "dangling.csv")
    return d / "dangling.csv"


def _link_to_null(d):
    _chardev(d, "null", NULL)
    os.symlink("null", d / "to-null")
    return d / "to-null"


def _mode_kept(d):
    (d / "private.csv").write_text("old")
    (d / "private.csv").chmod(0o600)
    return d / "private.csv"


def _check_link(d, p, link, target):
    assert p.is_symlink() and os.readlink(p) == link
    assert (d / target).read_text() == DATA


WRITTEN = [
    ("new file", lambda d: d / "new.csv", lambda d, p: p.read_text() == DATA and p.stat().st_mode & 0o777 == 0o644),
    ("regular file keeps its mode", _mode_kept, lambda d, p: p.read_text() == DATA and p.stat().st_mode & 0o777 == 0o600),
    ("symlink to a file", _link_to_file, lambda d, p: _check_link(d, p, "t.csv", "t.csv") is None),
    ("chain of symlinks", _chain, lambda d, p: _check_link(d, p, "l1", "sub/t.csv") is None and (d / "l1").is_symlink()),
    ("dangling symlink", _dangling_into_existing, lambda d, p: _check_link(d, p, "made.csv", "made.csv") is None),
    ("name at the 255-byte limit", lambda d: d / ("n" * 251 + ".csv"), lambda d, p: p.read_text() == DATA),
    ("character device (/dev/null copy)", lambda d: _chardev(d, "null", NULL), lambda d, p: stat.S_ISCHR(p.stat().st_mode) and p.stat().st_rdev == os.makedev(*NULL)),
    ("symlink to a character device", _link_to_null, lambda d, p: p.is_symlink() and stat.S_ISCHR(p.stat().st_mode)),
]  # fmt: skip


@pytest.mark.parametrize(("case", "setup", "check"), WRITTEN, ids=[c[0] for c in WRITTEN])
def test_write_follows_links_and_never_replaces_a_node(case, setup, check, tmp_path):
    path = setup(tmp_path)
    assert check_writable(path) == path
    assert atomic_write(path, DATA) == path
    assert check(tmp_path, path)
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary file left


def test_fifo_with_a_reader_receives_the_data_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    thread, got = _reader(fifo)
    data = "x" * 300_000  # larger than a pipe's buffer: written blocking once the reader is there
    for _ in range(200):  # the reader thread opens its end; until then a write is refused, never blocked
        try:
            atomic_write(fifo, data)
            break
        except WriteError as err:
            assert err.errno == errno.ENXIO
            threading.Event().wait(0.01)
    thread.join(CASE_SECONDS)
    assert got == [data.encode()]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# --- refused, with one line naming the path and the cause ---------------------------------------------
# (case, setup(d) -> path, parents, words the message must contain, errno)


def _fifo(d):
    os.mkfifo(d / "pipe")
    return d / "pipe"


def _socket(d):
    with socket.socket(socket.AF_UNIX) as sock:  # the file stays after the socket closes
        sock.bind(str(d / "sock"))  # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path fits
    return d / "sock"


def _file_ancestor(d):
    (d / "plain").write_text("keep")
    return d / "plain" / "x.csv"


def _loop(d):
    os.symlink("b", d / "a")
    os.symlink("a", d / "b")
    return d / "a"


def _dangling_into_missing(d):
    os.symlink("nowhere/x.csv", d / "dangling")
    return d / "dangling"


def _link_to_dir(d):
    (d / "folder").mkdir()
    os.symlink("folder", d / "to-folder")
    return d / "to-folder"


REFUSED = [
    ("/dev/full copy", lambda d: _chardev(d, "full", FULL), False, "no space left on device", errno.ENOSPC),
    ("FIFO without a reader", _fifo, False, "FIFO with no reader", errno.ENXIO),
    ("directory", lambda d: d, False, "it is a directory", errno.EISDIR),
    ("symlink to a directory", _link_to_dir, False, "it is a directory", errno.EISDIR),
    ("block device", lambda d: _mknod(d / "disk", stat.S_IFBLK, UNUSED_BLOCK), False, "block device", errno.EINVAL),
    ("socket", _socket, False, "it is a socket", errno.EINVAL),
    ("symlink loop", _loop, False, "too many levels of symbolic links", errno.ELOOP),
    ("dangling symlink into a missing folder", _dangling_into_missing, False, "nowhere' does not exist", errno.ENOENT),
    ("missing parent", lambda d: d / "no" / "such" / "x.csv", False, "folder '", errno.ENOENT),
    ("ancestor is a file", _file_ancestor, False, "plain' is not a folder", errno.ENOTDIR),
    ("ancestor is a file, parents", _file_ancestor, True, "plain' is not a folder", errno.ENOTDIR),
    ("5000-character name", lambda d: d / ("n" * 5000), False, "file name too long (5000 bytes", errno.ENAMETOOLONG),
    ("256-byte name", lambda d: d / ("n" * 256), True, "file name too long (256 bytes", errno.ENAMETOOLONG),
    ("5000-character path", lambda d: d.joinpath(*["n" * 200] * 25), True, "path too long", errno.ENAMETOOLONG),
    ("newline in a missing folder's name", lambda d: d / "bad\nname" / "x.csv", False, "name' does not exist", errno.ENOENT),
]  # fmt: skip


@pytest.mark.parametrize(("case", "setup", "parents", "words", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_write_names_path_and_cause_and_destroys_nothing(case, setup, parents, words, code, tmp_path):
    path = setup(tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(WriteError) as info:
        atomic_write(path, DATA, parents=parents)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, OSError) and err.errno == code
    message = str(err)
    assert message.startswith("cannot write '") and words in message, message
    assert repr(str(path))[:100] in message and "\n" not in message and len(message) < 700
    assert ".tmp" not in message  # the user's path, never the temporary file
    assert _snapshot(tmp_path) == before  # nothing replaced, created or left behind
    if case == "missing parent":
        assert f"folder '{tmp_path / 'no'}' does not exist" in message  # the first missing one


@pytest.mark.parametrize(("case", "setup", "parents", "words", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_check_writable_refuses_what_the_write_refuses(case, setup, parents, words, code, tmp_path):
    path = setup(tmp_path)
    if code in (errno.ENOSPC, errno.ENXIO):  # found only by writing (a full device, a reader to come)
        assert check_writable(path, parents=parents) == path
        return
    with pytest.raises(WriteError) as info:
        check_writable(path, parents=parents)
    assert info.value.errno == code and words in str(info.value)


NOT_A_PATH = [
    ("empty string", "", "expected a non-empty path"),
    ("not a path", 3, "expected a non-empty path"),
    ("trailing separator, no such folder", "{d}/new/", "names a folder"),
    ("trailing separator on a file", "{d}/f.csv/", "names a folder"),
]


@pytest.mark.parametrize(("case", "given", "words"), NOT_A_PATH, ids=[c[0] for c in NOT_A_PATH])
def test_what_is_not_a_file_name_is_refused(case, given, words, tmp_path):
    (tmp_path / "f.csv").write_text("old")
    path = given.replace("{d}", str(tmp_path)) if isinstance(given, str) else given
    for call in (check_writable, lambda p: atomic_write(p, DATA)):
        with pytest.raises(WriteError, match=words):
            call(path)
    assert os.listdir(tmp_path) == ["f.csv"] and (tmp_path / "f.csv").read_text() == "old"


def test_replacing_keeps_mode_and_owner(tmp_path):
    target = tmp_path / "theirs.csv"
    target.write_text("old")
    target.chmod(0o640)
    try:
        os.chown(target, 12345, 54321)
    except PermissionError:
        pytest.skip("only root can give a file to another owner")
    atomic_write(target, DATA)
    st = target.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 54321, 0o640)
    assert target.read_text() == DATA


def test_missing_folders_with_parents_and_the_rule_of_bench(tmp_path):
    deep = tmp_path / "new" / "deeper" / "x.csv"
    assert check_writable(deep, parents=True) == deep
    assert not (tmp_path / "new").exists()  # the check creates nothing
    with pytest.raises(WriteError, match="new' does not exist"):
        check_writable(deep)
    atomic_write_csv(deep, ["a"], [{"a": 1.5}], parents=True)
    assert deep.read_text().splitlines() == ["a", "1.5"]


def test_proc_is_refused_at_the_check_even_as_root():
    if not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    with pytest.raises(WriteError, match="folder '/proc'"):
        check_writable("/proc/x.csv")


# --- failures of the file system during the write (monkeypatched where they cannot be provoked) --------
FS_ERRORS = [errno.ENOSPC, errno.EIO, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EFBIG]
STAGES = ["os.fsync", "os.replace", "tempfile.mkstemp"]


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("code", FS_ERRORS, ids=errno.errorcode.get)
def test_file_system_errors_are_one_line_and_leave_the_old_file(code, stage, tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_text("old")
    module, name = stage.split(".")

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr({"os": os, "tempfile": tempfile}[module], name, fail)
    with pytest.raises(WriteError) as info:
        atomic_write(target, DATA)
    message = str(info.value)
    cause = os.strerror(code)
    assert info.value.errno == code and cause[0].lower() + cause[1:] in message
    assert message.startswith(f"cannot write '{target}': ") and ".tmp" not in message
    if stage == "tempfile.mkstemp" and code in (errno.EROFS, errno.EACCES):
        assert f"folder '{tmp_path}' is not writable" in message
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["out.csv"] and target.read_text() == "old"


def test_an_interrupt_removes_the_temporary_file_and_propagates(tmp_path, monkeypatch):
    target = tmp_path / "out.csv"
    target.write_text("old")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, DATA)
    assert os.listdir(tmp_path) == ["out.csv"] and target.read_text() == "old"


def test_permissions_refuse_before_the_write(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes through permission bits (the read-only file system case covers root)")
    locked = tmp_path / "locked"
    locked.mkdir()
    (tmp_path / "ro.csv").write_text("old")
    (tmp_path / "ro.csv").chmod(0o444)
    locked.chmod(0o500)
    try:
        cases = ((locked / "x.csv", "locked' is not writable"), (tmp_path / "ro.csv", "read-only"))
        for path, words in cases:
            for call in (lambda p=path: check_writable(p), lambda p=path: atomic_write(p, DATA)):
                with pytest.raises(WriteError, match=words):
                    call()
        assert (tmp_path / "ro.csv").read_text() == "old" and os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 16 KiB tmpfs of this test's own (root with CAP_SYS_ADMIN; skipped elsewhere)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_really_full_and_a_really_read_only_file_system(tiny_tmpfs):
    target = tiny_tmpfs / "out.csv"
    atomic_write(target, "old")
    with pytest.raises(WriteError, match="no space left on device") as info:
        atomic_write(target, "x" * 1_000_000)
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tiny_tmpfs) == ["out.csv"] and target.read_text() == "old"
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    for call in (lambda: check_writable(target), lambda: atomic_write(target, "new")):
        with pytest.raises(WriteError, match="read-only file system"):
            call()
    assert target.read_text() == "old"


# --- the writers of nsiter ----------------------------------------------------------------------------


def test_schedule_save_and_trajectory_csv_name_the_users_path(tmp_path):
    from nsiter.records import trajectory

    sched = load_schedule("cubic")
    tr = trajectory(torch.eye(4, dtype=torch.float64), sched, dtype="fp64")
    for write in (sched.save, tr.to_csv):
        for path, words in ((tmp_path, "it is a directory"), (tmp_path / "no" / "x", "does not exist")):
            with pytest.raises(ValueError, match=words) as info:
                write(path)
            assert str(info.value).startswith(f"cannot write '{path}'")
    _link_to_file(tmp_path)
    sched.save(tmp_path / "link.csv")
    assert (tmp_path / "link.csv").is_symlink() and Schedule.load(tmp_path / "t.csv") == sched


def test_kernel_cache_on_a_character_device_survives(tmp_path, monkeypatch):
    null = _chardev(tmp_path, "null", NULL)
    monkeypatch.setenv("NSITER_KERNEL_CACHE", str(null))
    clear_cache()
    try:
        kernel_choice("cpu", "bf16", 64)  # measured, then written to the cache file: here, into the device
    finally:
        clear_cache()
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_rdev == os.makedev(*NULL)


# --- the command line: one line, exit 2, before the work ----------------------------------------------


def _cli(capsys, *argv):
    code = nsiter.cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


RUN = ["run", "muon", "--shape", "8x8", "--dtype", "fp64", "--out"]
MINIMAX = ["search", "minimax", "--steps", "2", "--out"]
COMMANDS = [("run", RUN), ("search minimax", MINIMAX)]


@pytest.mark.parametrize(("command", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_cli_writes_devices_in_place_and_follows_links(command, argv, tmp_path, capsys):
    null = _chardev(tmp_path, "null", NULL)
    code, _, err = _cli(capsys, *argv, null)
    assert code == 0 and err == "" and stat.S_ISCHR(null.stat().st_mode)
    link = _link_to_file(tmp_path)
    code, _, err = _cli(capsys, *argv, link)
    assert code == 0 and link.is_symlink() and (tmp_path / "t.csv").read_text() != "old"
    if command.startswith("search"):
        assert Schedule.load(link).name  # the target holds the schedule


@pytest.mark.parametrize(("command", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_cli_full_device_is_one_line_exit_2(command, argv, tmp_path, capsys):
    full = _chardev(tmp_path, "full", FULL)
    code, _, err = _cli(capsys, *argv, full)
    assert code == 2 and err == f"nsiter: error: cannot write '{full}': no space left on device\n"
    assert stat.S_ISCHR(full.stat().st_mode)


def _no_benchmark(*args, **kwargs):
    raise AssertionError("the benchmark ran before its --out was checked")


BAD_BENCH_OUT = [
    ("directory", lambda d: d, "it is a directory"),
    ("ancestor is a file", _file_ancestor, "is not a folder"),
    ("/proc", lambda d: Path("/proc/x.csv"), "folder '/proc'"),
    ("symlink loop", _loop, "too many levels"),
    ("5000-character name", lambda d: d / ("n" * 5000), "file name too long"),
]


@pytest.mark.parametrize(("case", "setup", "words"), BAD_BENCH_OUT, ids=[c[0] for c in BAD_BENCH_OUT])
def test_bench_checks_out_before_running(case, setup, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nsiter.bench, "run_benchmark", _no_benchmark)
    code, out, err = _cli(capsys, "bench", "--quick", "--out", setup(tmp_path))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("nsiter: error: cannot write") and words in err


def _committed_results() -> dict[str, str]:
    results = REPO / "benchmarks" / "results"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(results.glob("*"))}


def test_bench_writes_only_with_out(tmp_path, capsys, monkeypatch):
    rows = [{"shape": "8x8", "dtype": "fp32", "ours_ms": 1.25}]
    monkeypatch.setattr(nsiter.bench, "run_benchmark", lambda *a, **k: rows)
    monkeypatch.chdir(tmp_path)  # outside the repository: no ./benchmarks/results/ appears
    before = _committed_results()
    code, out, _ = _cli(capsys, "bench", "--quick", "--json")
    assert code == 0 and json.loads(out)["csv"] is None
    assert os.listdir(tmp_path) == [] and _committed_results() == before
    code, out, _ = _cli(capsys, "bench", "--quick", "--json", "--out", "res/b.csv")
    assert code == 0 and json.loads(out)["csv"] == "res/b.csv"
    header, row = (tmp_path / "res" / "b.csv").read_text().splitlines()
    assert header == ",".join(nsiter.bench.COLUMNS) and "1.25" in row.split(",")


def test_kernel_cache_on_a_fifo_neither_hangs_nor_is_replaced(tmp_path, monkeypatch):
    # NSITER_KERNEL_CACHE naming a FIFO with no writer: reading it would block for ever; the decision is
    # measured instead, the failed write is swallowed (no reader), and the FIFO is still a FIFO
    import torch

    from nsiter import kernels

    fifo = tmp_path / "kernels.json"
    os.mkfifo(fifo)
    monkeypatch.setenv("NSITER_KERNEL_CACHE", str(fifo))
    kernels.clear_cache()
    choice = kernels.kernel_choice("cpu", torch.float32, 32)
    assert choice.gemm == "native" and stat.S_ISFIFO(os.stat(fifo).st_mode)
    kernels.clear_cache()
