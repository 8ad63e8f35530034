"""layerwise.data.librispeech against a local HTTP server on 127.0.0.1 (Range-capable) serving archives built here."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from layerwise.data import download, librispeech
from layerwise.data.download import Resource
from layerwise.errors import DataError

SPLIT = "mini-2"
LOCK = f".{SPLIT}.tar.gz.lock"  # advisory lock file, held during a download and removed after it
REPO = Path(__file__).resolve().parents[2]


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files[path]``; honours ``Range: bytes=N-`` unless ``server.honour_range`` is False;
    with ``server.cut_after`` set, announces the full length but sends only that many bytes and hangs up."""

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start, match = 0, re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.honour_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        time.sleep(srv.delay)
        if srv.cut_after is not None:
            payload, srv.cut_after = payload[: srv.cut_after], None
        srv.bytes_sent += len(payload)  # counted before writing: the client may finish before this thread resumes
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.files, srv.requests, srv.bytes_sent, srv.honour_range, srv.cut_after, srv.delay = {}, [], 0, True, None, 0
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def flac_bytes(seed: int, n_samples: int = 8000) -> bytes:
    noise = np.random.default_rng(seed).integers(-2000, 2000, n_samples, dtype=np.int16)
    buf = io.BytesIO()
    sf.write(buf, noise, 16000, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def librispeech_members(split: str = SPLIT) -> dict[str, bytes]:
    """Relative path -> bytes, laid out like LibriSpeech/<split>/<spk>/<chapter>/..."""
    members = {"LibriSpeech/README.TXT": b"synthetic\n"}
    for spk, chapter in [(84, 121123), (174, 50561)]:
        folder = f"LibriSpeech/{split}/{spk}/{chapter}"
        lines = []
        for utt in range(2):
            stem = f"{spk}-{chapter}-{utt:04d}"
            members[f"{folder}/{stem}.flac"] = flac_bytes(spk + utt)
            lines.append(f"{stem} WORD NUMBER {utt}")
        members[f"{folder}/{spk}-{chapter}.trans.txt"] = ("\n".join(lines) + "\n").encode()
    return members


def make_tar(members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
        for info in extra:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def resource_for(blob: bytes, urls: list[str], *, size_known: bool = True, name: str = f"{SPLIT}.tar.gz",
                 folder: str = f"LibriSpeech/{SPLIT}", extract_to: str = "") -> Resource:
    size = len(blob) if size_known else None
    return Resource(name, size, hashlib.md5(blob).hexdigest(), tuple(urls), extract_to, folder)


def assert_extracted(dest: Path, members: dict[str, bytes]) -> None:
    for rel, payload in members.items():
        assert (dest / rel).read_bytes() == payload, rel


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_download_verify_extract_and_idempotent(server, tmp_path):
    members = librispeech_members()
    blob = make_tar(members)
    server.files["/31/mini-2.tar.gz"] = blob
    table = {SPLIT: resource_for(blob, [server.base + "/31/mini-2.tar.gz"])}
    dest = tmp_path / "data"

    folder = librispeech.download_split(SPLIT, dest, resources=table, progress=False)

    assert folder == dest / "LibriSpeech" / SPLIT
    assert_extracted(dest, members)
    audio, rate = sf.read(folder / "84" / "121123" / "84-121123-0001.flac", dtype="int16")
    assert rate == 16000 and np.array_equal(audio, np.random.default_rng(85).integers(-2000, 2000, 8000,
                                                                                        dtype=np.int16))
    assert json.loads((folder / librispeech.MARKER_NAME).read_text())["md5"] == hashlib.md5(blob).hexdigest()
    assert (dest / "mini-2.tar.gz").read_bytes() == blob and not (dest / "mini-2.tar.gz.part").exists()
    # Second call: marker present -> no request at all.
    n_requests = len(server.requests)
    assert librispeech.download_split(SPLIT, dest, resources=table, progress=False) == folder
    assert len(server.requests) == n_requests
    # Marker gone but archive kept -> re-extracted from the verified archive, still no request.
    (folder / librispeech.MARKER_NAME).unlink()
    (folder / "84" / "121123" / "84-121123-0000.flac").unlink()
    librispeech.download_split(SPLIT, dest, resources=table, progress=False, keep_archive=False)
    assert len(server.requests) == n_requests
    assert_extracted(dest, members)
    assert not (dest / "mini-2.tar.gz").exists()
    assert not (dest / LOCK).exists()


def test_resume_after_connection_drop(server, tmp_path):
    members = librispeech_members()
    blob = make_tar(members)
    cut = len(blob) // 3
    server.files["/a.tar.gz"] = blob
    server.cut_after = cut
    table = {SPLIT: resource_for(blob, [server.base + "/a.tar.gz"])}
    dest = tmp_path / "d"

    with pytest.raises(DataError, match="connection closed"):
        librispeech.download_split(SPLIT, dest, resources=table, progress=False)
    part = dest / "mini-2.tar.gz.part"
    assert part.read_bytes() == blob[:cut]
    assert not (dest / "LibriSpeech").exists()
    first = server.bytes_sent
    assert first == cut

    librispeech.download_split(SPLIT, dest, resources=table, progress=False)

    second = server.bytes_sent - first
    assert second == len(blob) - cut < len(blob)
    assert server.requests[-1] == ("/a.tar.gz", f"bytes={cut}-")
    assert_extracted(dest, members)
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    members = librispeech_members()
    blob = make_tar(members)
    server.files["/a.tar.gz"] = blob
    server.honour_range = False
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "mini-2.tar.gz.part").write_bytes(blob[:100])

    librispeech.download_split(SPLIT, dest, resources={SPLIT: resource_for(blob, [server.base + "/a.tar.gz"])},
                        progress=False)

    assert server.requests == [("/a.tar.gz", "bytes=100-")]
    assert server.bytes_sent == len(blob)  # whole file re-sent, not appended to the 100 bytes
    assert_extracted(dest, members)


@pytest.mark.parametrize("size_known", [True, False])
def test_bad_checksum_is_an_error_and_nothing_is_extracted(server, tmp_path, size_known):
    blob = make_tar(librispeech_members())
    corrupt = bytearray(blob)
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, different MD5
    server.files["/a.tar.gz"] = bytes(corrupt)
    dest = tmp_path / "d"

    with pytest.raises(DataError, match=f"MD5 {hashlib.md5(corrupt).hexdigest()}, expected"):
        librispeech.download_split(SPLIT, dest, progress=False,
                            resources={SPLIT: resource_for(blob, [server.base + "/a.tar.gz"], size_known=size_known)})

    assert all_files(dest) == {"mini-2.tar.gz.bad"}  # no archive, no .part, no lock, nothing extracted
    assert (dest / "mini-2.tar.gz.bad").read_bytes() == corrupt


def test_wrong_size_is_refused_before_downloading(server, tmp_path):
    blob = make_tar(librispeech_members())
    server.files["/a.tar.gz"] = blob + b"junk"
    with pytest.raises(DataError, match="expected"):
        librispeech.download_split(SPLIT, tmp_path, progress=False,
                            resources={SPLIT: resource_for(blob, [server.base + "/a.tar.gz"])})
    assert all_files(tmp_path) == set()  # refused on Content-Length: no .part, no lock, nothing extracted


def test_parallel_jobs_download_once(server, tmp_path):
    members = librispeech_members()
    blob = make_tar(members)
    server.files["/a.tar.gz"] = blob
    server.delay = 0.3  # keeps the first download in flight while the second job starts
    table = {SPLIT: resource_for(blob, [server.base + "/a.tar.gz"])}
    results, errors = [], []

    def job():
        try:
            results.append(librispeech.download_split(SPLIT, tmp_path, resources=table, progress=False))
        except Exception as err:  # noqa: BLE001 -- surfaced by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)

    assert errors == [] and len(results) == 3
    assert len(server.requests) == 1  # the other jobs waited on the lock, then saw the marker
    assert_extracted(tmp_path, members)
    assert not (tmp_path / LOCK).exists()


def test_fallback_to_second_mirror_after_404(server, tmp_path):
    members = librispeech_members()
    blob = make_tar(members)
    server.files["/good/mini-2.tar.gz"] = blob
    table = {SPLIT: resource_for(blob, ["http://unused.invalid/"])}

    folder = librispeech.download_split(SPLIT, tmp_path, resources=table, progress=False,
                                 mirrors=[server.base + "/missing/", server.base + "/good"])

    assert [path for path, _ in server.requests] == ["/missing/mini-2.tar.gz", "/good/mini-2.tar.gz"]
    assert folder.is_dir()
    assert_extracted(tmp_path, members)


def test_all_mirrors_failing_names_each(server, tmp_path):
    blob = make_tar(librispeech_members())
    urls = [server.base + "/x/mini-2.tar.gz", server.base + "/y/mini-2.tar.gz"]
    with pytest.raises(DataError) as err:
        librispeech.download_split(SPLIT, tmp_path, resources={SPLIT: resource_for(blob, urls)}, progress=False)
    assert all(f"{url}: HTTP 404" in str(err.value) for url in urls)


def _evil_tars(outside: Path) -> dict[str, list[tarfile.TarInfo]]:
    def info(name, **attrs):
        ti = tarfile.TarInfo(name)
        ti.size = attrs.pop("size", 0)
        for key, value in attrs.items():
            setattr(ti, key, value)
        return ti

    return {
        "traversal": [info(f"LibriSpeech/{SPLIT}/../../../evil", size=4)],
        "absolute": [info(str(outside / "abs_evil"), size=4)],
        "symlink_out": [info(f"LibriSpeech/{SPLIT}/link", type=tarfile.SYMTYPE, linkname="../../../..")],
        "hardlink_out": [info(f"LibriSpeech/{SPLIT}/hard", type=tarfile.LNKTYPE, linkname="../outside")],
        "device": [info(f"LibriSpeech/{SPLIT}/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)],
    }


@pytest.mark.parametrize("case", ["traversal", "absolute", "symlink_out", "hardlink_out", "device"])
def test_unsafe_tar_is_rejected_and_nothing_written(server, tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    members = librispeech_members()
    blob = make_tar(members, extra=_evil_tars(outside)[case])  # correct checksum: only the content is bad
    server.files["/e.tar.gz"] = blob
    dest = tmp_path / "a" / "b" / "dest"

    with pytest.raises(DataError, match="unsafe archive member"):
        librispeech.download_split(SPLIT, dest, resources={SPLIT: resource_for(blob, [server.base + "/e.tar.gz"])},
                            progress=False)

    assert all_files(dest) == {"mini-2.tar.gz"}  # the verified archive only; no member extracted, no lock
    assert all_files(tmp_path) == {"a/b/dest/mini-2.tar.gz"}  # nothing outside dest either
    assert not (dest / "LibriSpeech").exists()


def test_zip_alignments_extract_into_their_own_folder(server, tmp_path):
    grids = {"LibriSpeech/dev-clean/84/121123/84-121123-0000.TextGrid": b"File type = \"ooTextFile\"\n"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, payload in grids.items():
            zf.writestr(name, payload)
    blob = buf.getvalue()
    server.files["/z/librispeech_alignments.zip"] = blob
    res = resource_for(blob, [server.base + "/z/librispeech_alignments.zip"], name="librispeech_alignments.zip",
                       folder="alignments", extract_to="alignments")

    folder = librispeech.download_alignments(tmp_path, resources={"alignments": res}, progress=False)

    assert folder == tmp_path / "alignments"
    assert_extracted(folder, grids)
    assert (folder / librispeech.MARKER_NAME).is_file()


def test_mirror_url():
    assert download.mirror_url("https://h/resources/31", "a.tar.gz") == "https://h/resources/31/a.tar.gz"
    assert download.mirror_url("https://h/r/31/", "a.tar.gz") == "https://h/r/31/a.tar.gz"
    assert download.mirror_url("https://h/f/a.zip?download=1", "a.zip") == "https://h/f/a.zip?download=1"


def test_table_matches_published_facts():
    facts = {  # as published by OpenSLR and Zenodo, typed in independently of the module
        "dev-clean-2": (126_046_265, "6d7ab67ac6a1d2c993d050e16d61080d"),
        "train-clean-5": (332_954_390, "5df7d4e78065366204ca6845bb08f490"),
        "dev-clean": (337_926_286, "42e2234ba48799c1f50f24a7926300a1"),
        "test-clean": (346_663_984, "32fa31d27d2e1cad72775fee3f4849a9"),
        "dev-other": (None, "c8d0bcc9cca99d4f8b62fcc847357931"),
        "test-other": (None, "fb5a50374b501bb3bac4815ee91d3135"),
        "alignments": (623_023_332, "2bab567d0ace651a4ba254e813629f46"),
    }
    assert {k: (r.size, r.md5) for k, r in librispeech.RESOURCES.items()} == facts
    assert librispeech.RESOURCES["dev-clean-2"].mirrors[0] == "https://www.openslr.org/resources/31/dev-clean-2.tar.gz"
    assert librispeech.RESOURCES["test-clean"].mirrors[0] == "https://www.openslr.org/resources/12/test-clean.tar.gz"


def run_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "layerwise.data", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_cli_exit_codes(server, tmp_path):
    members = librispeech_members("dev-clean-2")
    blob = make_tar(members)
    server.files["/m/dev-clean-2.tar.gz"] = blob
    dest = tmp_path / "data"

    # 2: usage errors.
    assert run_cli("download", "--split", "bogus").returncode == 2
    assert run_cli("download", "--split", "none", "--dest", str(dest)).returncode == 2
    assert run_cli().returncode == 2
    # 0: --help and --list.
    helped = run_cli("download", "--help")
    assert helped.returncode == 0 and "dev-clean-2" in helped.stdout and "example" in helped.stdout
    listed = run_cli("--list")
    assert listed.returncode == 0 and "6d7ab67ac6a1d2c993d050e16d61080d" in listed.stdout
    # 2 (issue 22: nothing was produced): the real dev-clean-2 entry against a mirror offering the wrong file ->
    # clear message, no traceback.
    failed = run_cli("download", "--split", "dev-clean-2", "--dest", str(dest), "--no-progress",
                     "--mirror", server.base + "/m/")
    assert failed.returncode == 2
    assert "126,046,265" in failed.stderr and "Traceback" not in failed.stderr
    assert not (dest / "LibriSpeech").exists()
    # 0: a real process whose table entry is swapped for the test archive; prints the folder.
    code = cli_with_test_archive(blob, server)
    ok = run_cli("download", "--split", "dev-clean-2", "--dest", str(dest), "--no-progress", code=code)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(dest / "LibriSpeech" / "dev-clean-2")
    assert_extracted(dest, members)


def cli_with_test_archive(blob: bytes, server) -> str:
    """Python code running the data CLI with the dev-clean-2 entry swapped for ``blob`` served by ``server``."""
    return ("import sys; from layerwise.data import librispeech; from layerwise.data.download import Resource; "
            "from layerwise.cli.data import main; "
            f"librispeech.RESOURCES['dev-clean-2'] = Resource('dev-clean-2.tar.gz', {len(blob)}, "
            f"'{hashlib.md5(blob).hexdigest()}', ('{server.base}/m/dev-clean-2.tar.gz',), '', "
            "'LibriSpeech/dev-clean-2'); sys.exit(main(sys.argv[1:]))")


def test_stale_lock_file_of_an_older_run_is_used_and_removed(server, tmp_path):
    members = librispeech_members()
    blob = make_tar(members)
    server.files["/a.tar.gz"] = blob
    (tmp_path / LOCK).write_text("")  # left by a crashed run of an older version (nobody holds it)
    librispeech.download_split(SPLIT, tmp_path, resources={SPLIT: resource_for(blob, [server.base + "/a.tar.gz"])},
                        progress=False)
    assert_extracted(tmp_path, members)
    assert not (tmp_path / LOCK).exists()


def test_lock_is_exclusive_while_held_and_removed_after(tmp_path):
    """A second holder waits until the first releases; the file is gone afterwards."""
    path, order = tmp_path / "x.lock", []

    def second():
        with librispeech.locked(path):
            order.append("second")

    with librispeech.locked(path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"] and not path.exists()


def test_failed_download_names_real_paths_and_the_way_around_it(server, tmp_path):
    """The CLI against a local server that hangs up mid-transfer: exit 1, the real .part path and its size, how to
    resume, AUDIO_DIR for users who have the audio; no placeholder, no lock file."""
    blob = make_tar(librispeech_members("dev-clean-2"))
    server.files["/m/dev-clean-2.tar.gz"] = blob
    server.cut_after = 1000
    dest = tmp_path / "my data"
    code = cli_with_test_archive(blob, server)
    failed = run_cli("download", "--split", "dev-clean-2", "--dest", str(dest), "--no-progress", code=code)
    assert failed.returncode == 2, failed.stderr  # the one requested resource failed: nothing produced
    part = dest.absolute() / "dev-clean-2.tar.gz.part"
    assert part.stat().st_size == 1000
    assert f"The partial download {part} (1,000 of {len(blob):,} bytes) is kept" in failed.stderr
    assert f"{dest.absolute() / 'LibriSpeech' / 'dev-clean-2'} is not there" in failed.stderr
    assert "AUDIO_DIR=/path/to/LibriSpeech/dev-clean-2 ./extract_hubert_features.sh" in failed.stderr
    assert "<dest>" not in failed.stderr and "<archive>" not in failed.stderr and "Traceback" not in failed.stderr
    assert all_files(dest) == {"dev-clean-2.tar.gz.part"}


def test_failure_advice_for_alignments_and_for_nothing_kept(tmp_path):
    text = librispeech.failure_advice("alignments", tmp_path)
    assert f"{tmp_path.absolute() / 'alignments'} is not there" in text
    assert "Nothing of librispeech_alignments.zip was kept" in text and "--alignment_dir" in text
    (tmp_path / "librispeech_alignments.zip.bad").write_bytes(b"x")
    assert f"{tmp_path.absolute() / 'librispeech_alignments.zip.bad'} failed verification" in (
        librispeech.failure_advice("alignments", tmp_path))


def test_cli_prints_a_failed_download_on_one_line(server, tmp_path):
    """Issue 22 (lossy error text): the DataError of a resource whose every mirror failed is printed whole, on one
    line (each mirror's reason kept), before the advice lines; nothing produced: exit 2."""
    urls = [server.base + "/x/", server.base + "/y/"]
    failed = run_cli("download", "--split", "dev-clean-2", "--dest", str(tmp_path / "d"), "--no-progress",
                     "--mirror", urls[0], "--mirror", urls[1])
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    (line,) = [x for x in failed.stderr.splitlines() if x.startswith("error: dev-clean-2:")]
    assert all(f"{url}dev-clean-2.tar.gz: HTTP 404" in line for url in urls), line
    assert "could not get a verified dev-clean-2.tar.gz" in line
    assert "not downloaded: dev-clean-2" in failed.stderr


def test_cli_sigterm_stops_as_ctrl_c_naming_the_partial_download(tmp_path, monkeypatch, capsys):
    """A batch system's time limit (SIGTERM) during a download: one line naming the .part file that resumes, 130."""
    import os
    import signal

    from layerwise.cli import data as data_cli

    def download(name, dest, **kwargs):
        if started:  # the second run: part of the archive had arrived
            (tmp_path / "dev-clean-2.tar.gz.part").write_bytes(b"x")
        started.append(name)
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the download")

    started: list[str] = []
    monkeypatch.setattr(data_cli, "download", download)
    before = signal.getsignal(signal.SIGTERM)
    argv = ["download", "--split", "dev-clean-2", "--dest", str(tmp_path), "--no-progress"]
    assert data_cli.main(argv) == 130  # stopped before any byte arrived (waiting for another job's lock)
    assert capsys.readouterr().err == "terminated (SIGTERM); dev-clean-2 was not finished; run the same command again\n"
    assert data_cli.main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("terminated (SIGTERM); the partial download ") and "dev-clean-2.tar.gz.part resumes" in err
    assert signal.getsignal(signal.SIGTERM) is before
