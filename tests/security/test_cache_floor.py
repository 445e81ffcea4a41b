"""The pin cache and its rollback floor: one private file, never lowered, safe to share.

The fetches run over real TLS on loopback (``tests/updates.py``); the shared-cache test runs
several real processes writing one cache at once.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import pinsdk
from pinsdk import DomainPins, PinPolicy, UpdateStatus

from ..signing import payload, public_pem
from ..updates import UpdateServer

pytestmark = pytest.mark.anyio

BACKUP = "sha256/" + base64.b64encode(hashlib.sha256(b"backup").digest()).decode()
OTHER = "sha256/" + base64.b64encode(hashlib.sha256(b"other").digest()).decode()


def doc(signer: Any, version: int, pins: list[str]) -> bytes:
    return pinsdk.sign_envelope(payload(version, [{"host": "127.0.0.1", "pins": pins}]), signer)


def dynamic(
    updates: UpdateServer, signer: Any, trust: ssl.SSLContext, cache: Path, **kw: Any
) -> pinsdk.DynamicPins:
    return pinsdk.DynamicPins(
        updates.url,
        [public_pem(signer)],
        verify=trust,
        cache_path=cache,
        auto_refresh=False,
        self_heal_interval=None,
        **kw,
    )


def file_version(path: Path) -> int:
    """The version of the document in a cache file (0 if there is none), read without pinsdk."""
    try:
        content = json.loads(path.read_bytes())
    except FileNotFoundError:
        return 0
    envelope = json.loads(base64.b64decode(content["document"]))
    return int(json.loads(base64.b64decode(envelope["payload"]))["version"])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def _cached(
    updates: UpdateServer, signer: Any, trust: ssl.SSLContext, cache: Path, version: int, pin: str
) -> None:
    async with dynamic(updates, signer, trust, cache) as first:
        updates.publish(doc(signer, version, [pin, BACKUP]))
        assert (await first.refresh()).status is UpdateStatus.UPDATED
    assert file_version(cache) == version


async def test_cache_is_one_private_file_holding_its_floor(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
) -> None:
    cache = tmp_path / "app-data" / "pins.cache"
    await _cached(updates, signer, device_trust(), cache, 3, pins["leaf"])
    assert mode(cache.parent) == 0o700
    assert mode(cache) == 0o600
    assert mode(cache.parent / "pins.cache.lock") == 0o600
    assert json.loads(cache.read_bytes())["floor"] == 3
    assert sorted(p.name for p in cache.parent.iterdir()) == ["pins.cache", "pins.cache.lock"]
    async with dynamic(updates, signer, device_trust(), cache) as again:
        assert again.state.floor == 3
        updates.publish(doc(signer, 4, [pins["root"], BACKUP]))
        assert (await again.refresh()).status is UpdateStatus.UPDATED
    assert json.loads(cache.read_bytes())["floor"] == 4
    assert mode(cache) == 0o600


BAD_FLOORS: dict[str, object] = {
    "31 digits": 10**30,
    "beyond any version": 2**64,
    "negative": -1,
    "zero": 0,
    "a string": "3",
    "a float": 3.0,
    "a boolean": True,
    "above its document": 1000,
    "below its document": 2,
    "5000 digits": "5000 digits",  # written as raw JSON below
}


@pytest.mark.parametrize("bad", list(BAD_FLOORS))
async def test_a_planted_floor_makes_the_cache_corrupt_not_a_lockout(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bad: str,
) -> None:
    """An out-of-range, mistyped or disagreeing floor is not believed: the cache is not trusted
    (WARNING), the bootstrap is in force and the network decides; legitimate updates still go
    through. (Planted in the cache file and in the old separate floor file alike.)"""
    cache = tmp_path / "pins.cache"
    await _cached(updates, signer, device_trust(), cache, 3, pins["leaf"])
    content = json.loads(cache.read_bytes())
    legacy = tmp_path / "pins.cache.floor"
    if bad == "5000 digits":
        number = "9" * 5000
        cache.write_text(
            json.dumps({**content, "floor": 0}).replace('"floor": 0', '"floor": ' + number)
        )
        legacy.write_text('{"pinsdk_floor": 1, "version": ' + number + "}")
    else:
        cache.write_text(json.dumps({**content, "floor": BAD_FLOORS[bad]}))
        legacy.write_text(json.dumps({"pinsdk_floor": 1, "version": BAD_FLOORS[bad]}))
    bootstrap = PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        async with dynamic(
            updates, signer, device_trust(), cache, bootstrap=bootstrap
        ) as restarted:
            assert restarted.current is bootstrap
            updates.publish(doc(signer, 2, [pins["root"], BACKUP]))
            result = await restarted.refresh()
            assert result.status is UpdateStatus.UPDATED, result.reason
            assert restarted.state.floor == 2
    assert "not trusted" in caplog.text
    assert json.loads(cache.read_bytes())["floor"] == 2
    assert not legacy.exists()  # the old separate file goes with the first write


async def test_a_missing_floor_is_the_cached_documents_version(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A cache without a floor (an older pinsdk's file, or one whose floor was deleted) floors at
    its verified document; the old separate floor file is no longer read, so it cannot make a
    valid cache count as a rollback."""
    cache = tmp_path / "pins.cache"
    await _cached(updates, signer, device_trust(), cache, 3, pins["leaf"])
    content = json.loads(cache.read_bytes())
    content.pop("floor", None)  # also what an older pinsdk wrote
    cache.write_text(json.dumps(content))
    (tmp_path / "pins.cache.floor").write_text('{"pinsdk_floor": 1, "version": 9}')
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        async with dynamic(updates, signer, device_trust(), cache) as restarted:
            assert restarted.current.version == 3
            assert restarted.state.floor == 3
            updates.publish(doc(signer, 2, [pins["root"], BACKUP]))
            older = await restarted.refresh()
            assert older.status is UpdateStatus.REJECTED
            assert "older than version 3" in older.reason
            updates.publish(doc(signer, 4, [pins["root"], BACKUP]))
            assert (await restarted.refresh()).status is UpdateStatus.UPDATED
    assert "pin cache" not in caplog.text
    assert json.loads(cache.read_bytes())["floor"] == 4
    assert not (tmp_path / "pins.cache.floor").exists()


@pytest.mark.parametrize("unsafe", ["0o777", "0o770", "0o1777 (sticky)", "another owner"])
async def test_a_directory_others_can_write_is_refused(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    unsafe: str,
) -> None:
    """Another user who can write the directory could swap the cache: it is neither read nor
    written (WARNING each time), the bootstrap stays in force, updates still apply in memory."""
    directory = tmp_path / "shared"
    cache = directory / "pins.cache"
    await _cached(updates, signer, device_trust(), cache, 3, pins["leaf"])
    written = cache.read_bytes()
    if unsafe == "another owner":
        if os.geteuid() != 0:
            pytest.skip("changing a directory's owner needs root")
        os.chown(directory, 54321, -1)
        reason = "is owned by uid 54321"
    else:
        os.chmod(directory, int(unsafe.split()[0], 8))
        reason = "is writable by group or others"
    bootstrap = PinPolicy([DomainPins("127.0.0.1", [pins["intermediate"], BACKUP])])
    try:
        with caplog.at_level(logging.WARNING, logger="pinsdk"):
            async with dynamic(
                updates, signer, device_trust(), cache, bootstrap=bootstrap
            ) as restarted:
                assert restarted.current is bootstrap
                assert f"pin cache {cache} is not used" in caplog.text
                updates.publish(doc(signer, 4, [pins["root"], BACKUP]))
                assert (await restarted.refresh()).status is UpdateStatus.UPDATED
                assert restarted.current.version == 4
    finally:
        os.chmod(directory, 0o700)
        os.chown(directory, os.geteuid(), -1)
    assert reason in caplog.text
    assert "could not write pin cache" in caplog.text
    assert cache.read_bytes() == written


async def test_a_cache_file_others_can_write_is_not_trusted(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "pins.cache"
    await _cached(updates, signer, device_trust(), cache, 3, pins["leaf"])
    os.chmod(cache, 0o666)
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        async with dynamic(updates, signer, device_trust(), cache) as restarted:
            assert restarted.current == PinPolicy()
            updates.publish(doc(signer, 4, [pins["root"], BACKUP]))
            assert (await restarted.refresh()).status is UpdateStatus.UPDATED
    assert "is writable by group or others (mode 0666); not trusted" in caplog.text
    assert mode(cache) == 0o600  # replaced by a private file
    assert file_version(cache) == 4


async def test_a_writer_behind_never_lowers_the_cache(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two instances share one cache; the one behind accepts version 2 after the other wrote 3.
    The file keeps 3 (and its floor), and a restart loads 3: nothing is taken for a rollback."""
    cache = tmp_path / "pins.cache"
    ahead = dynamic(updates, signer, device_trust(), cache)
    behind = dynamic(updates, signer, device_trust(), cache)
    documents = {v: doc(signer, v, [pins["leaf"], BACKUP]) for v in (1, 2, 3)}
    assert (await behind.apply_document(documents[1])).status is UpdateStatus.UPDATED
    for v in (2, 3):
        assert (await ahead.apply_document(documents[v])).status is UpdateStatus.UPDATED
    assert (await behind.apply_document(documents[2])).status is UpdateStatus.UPDATED
    assert file_version(cache) == 3
    assert json.loads(cache.read_bytes())["floor"] == 3
    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        async with dynamic(updates, signer, device_trust(), cache) as restarted:
            assert restarted.current.version == 3
            assert restarted.state.floor == 3
    assert "pin cache" not in caplog.text


async def test_the_wait_for_the_cache_lock_is_bounded(
    updates: UpdateServer,
    signer: Any,
    device_trust: Callable[[], ssl.SSLContext],
    pins: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A writer that holds the lock and hangs cannot hang the refresher: the write is given up
    (WARNING) and the update stays in force in memory."""
    cache = tmp_path / "pins.cache"
    pinned = dynamic(updates, signer, device_trust(), cache)
    assert (await pinned.apply_document(doc(signer, 1, [pins["leaf"], BACKUP]))).status is (
        UpdateStatus.UPDATED
    )
    monkeypatch.setattr("pinsdk._cache.LOCK_TIMEOUT", 0.2)
    fd = os.open(tmp_path / "pins.cache.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        result = await pinned.apply_document(doc(signer, 2, [pins["root"], BACKUP]))
        elapsed = time.monotonic() - started
    finally:
        os.close(fd)
    assert result.status is UpdateStatus.UPDATED
    assert pinned.current.version == 2
    assert elapsed < 5
    assert "is held by another process for more than 0.2 s" in caplog.text
    assert file_version(cache) == 1
    assert (await pinned.apply_document(doc(signer, 3, [pins["root"], BACKUP]))).status is (
        UpdateStatus.UPDATED
    )
    assert file_version(cache) == 3


# One writer process: it applies its share of the versions (index+1, index+1+workers, ...),
# restarting from the shared cache every fourth step, and reports what it saw go wrong.
WORKER = r"""
import asyncio, base64, json, logging, sys
import pinsdk

def file_version(path):
    try:
        with open(path, "rb") as f:
            content = json.loads(f.read())
    except FileNotFoundError:
        return 0
    envelope = json.loads(base64.b64decode(content["document"]))
    return json.loads(base64.b64decode(envelope["payload"]))["version"]

class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = []
    def emit(self, record):
        self.seen.append(record.getMessage())

async def main(cache, spec_path, index, workers):
    with open(spec_path) as f:
        spec = json.load(f)
    documents = [base64.b64decode(d) for d in spec["documents"]]  # [i] is version i + 1
    warnings = Warnings()
    logging.getLogger("pinsdk").addHandler(warnings)
    def make():
        return pinsdk.DynamicPins(
            "https://localhost:9/pins.json", [spec["key"]], auto_refresh=False,
            self_heal_interval=None, cache_path=cache,
        )
    print("ready", flush=True)
    sys.stdin.readline()  # all start together
    problems, seen, pins = [], 0, None
    for step, version in enumerate(range(index + 1, len(documents) + 1, workers)):
        if step % 4 == 0:  # a restart: load what the others left
            pins = make()
            async with pins:
                loaded = pins.state.version
            if loaded < seen:
                problems.append(f"a restart loaded version {loaded}; {seen} was on disk")
            seen = max(seen, loaded)
        result = await pins.apply_document(documents[version - 1])
        if result.status is pinsdk.UpdateStatus.UPDATED:
            seen = max(seen, version)
        on_disk = file_version(cache)
        if on_disk < seen:
            problems.append(
                f"after version {version} ({result.status.value}) the file holds {on_disk} < {seen}"
            )
        seen = max(seen, on_disk)
    problems += [w for w in warnings.seen if "pin cache" in w or "accepted before" in w]
    print(json.dumps(problems), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def test_several_processes_sharing_one_cache(
    signer: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Four processes alternate updates of increasing versions into one cache, restarting from it
    as they go. The version (and floor) in the file never decreases, no process ever loads less
    than was on disk or takes a valid cache for a rollback, and a restart afterwards loads the
    newest version."""
    workers, steps = 4, 24
    total = workers * steps
    cache = tmp_path / "shared" / "pins.cache"
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "key": public_pem(signer),
                "documents": [
                    base64.b64encode(doc(signer, v, [BACKUP, OTHER])).decode()
                    for v in range(1, total + 1)
                ],
            }
        )
    )
    root = str(Path(pinsdk.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    procs = []
    errors = [open(tmp_path / f"worker{i}.err", "w") for i in range(workers)]  # noqa: SIM115
    try:
        for i in range(workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(cache), str(spec), str(i), str(workers)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors[i],
                    text=True,
                    env=env,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"  # "" if it died: EOF, no hang
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        samples = []
        deadline = time.monotonic() + 240
        while True:  # bounded by the deadline
            samples.append(file_version(cache))
            running = [p for p in procs if p.poll() is None]
            if not running:
                break
            assert time.monotonic() < deadline, "the writers did not finish in 240 s"
            with contextlib.suppress(subprocess.TimeoutExpired):
                running[0].wait(timeout=0.005)
        reports = []
        for i, proc in enumerate(procs):
            out, _ = proc.communicate(timeout=10)
            errors[i].close()
            assert proc.returncode == 0, (tmp_path / f"worker{i}.err").read_text()
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for handle in errors:
            handle.close()
    assert reports == [[]] * workers
    assert samples == sorted(samples), "the cache file's version went down"
    assert samples[-1] == total
    assert json.loads(cache.read_bytes())["floor"] == total

    async def restart() -> None:
        async with pinsdk.DynamicPins(
            "https://localhost:9/pins.json",
            [public_pem(signer)],
            auto_refresh=False,
            self_heal_interval=None,
            cache_path=cache,
        ) as restarted:
            assert restarted.current.version == total
            assert restarted.state.floor == total

    with caplog.at_level(logging.WARNING, logger="pinsdk"):
        anyio.run(restart)
    assert "pin cache" not in caplog.text
