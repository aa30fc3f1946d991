"""Result stores: round trip, tenant isolation, safe names, TTL and sweep, and all-or-nothing visibility."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from face3d.service.config import Settings
from face3d.service.storage import (
    FilesystemStore,
    ResultNotFound,
    ResultStore,
    S3Store,
    make_store,
    new_result_id,
)

FILES = {"face.obj": b"v 0 0 0\n", "face.png": b"\x89PNG" + bytes(range(256)) * 8, "face.json": b"{}"}
BUCKET = "face3d-test"


@pytest.fixture
def s3_client() -> Iterator[object]:
    moto = pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    with moto.mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ResultStore:
    if request.param == "filesystem":
        return FilesystemStore(tmp_path / "results")
    return S3Store(BUCKET, "res/", client=request.getfixturevalue("s3_client"))


def test_round_trip_and_delete(store: ResultStore) -> None:
    rid = new_result_id()
    store.put(rid, "alice", FILES, ttl_s=60)
    assert {name: store.get(rid, name, "alice") for name in FILES} == FILES
    with pytest.raises(ResultNotFound):
        store.get(rid, "face.glb", "alice")
    store.delete(rid, "alice")
    with pytest.raises(ResultNotFound):
        store.get(rid, "face.obj", "alice")
    with pytest.raises(ResultNotFound):
        store.delete(rid, "alice")


def test_tenant_isolation(store: ResultStore) -> None:
    rid = new_result_id()
    store.put(rid, "alice", FILES, ttl_s=60)
    with pytest.raises(ResultNotFound):
        store.get(rid, "face.obj", "mallory")
    with pytest.raises(ResultNotFound):
        store.delete(rid, "mallory")
    assert store.get(rid, "face.obj", "alice") == FILES["face.obj"]


@pytest.mark.parametrize("name", ["../face.obj", "a/b", ".hidden", "_meta.json", "..", "x" * 200, ""])
def test_unsafe_names_are_not_found_and_refused(store: ResultStore, name: str) -> None:
    rid = new_result_id()
    store.put(rid, "alice", FILES, ttl_s=60)
    with pytest.raises(ResultNotFound):
        store.get(rid, name, "alice")
    with pytest.raises(ValueError):
        store.put(new_result_id(), "alice", {name: b"x"}, ttl_s=60)


@pytest.mark.parametrize("rid", ["../etc", "short", "a" * 65, "has space00"])
def test_unsafe_ids(store: ResultStore, rid: str) -> None:
    with pytest.raises(ResultNotFound):
        store.get(rid, "face.obj", "alice")
    with pytest.raises(ResultNotFound):
        store.put(rid, "alice", FILES, ttl_s=60)


def test_ttl_and_sweep(store: ResultStore) -> None:
    short, long = new_result_id(), new_result_id()
    store.put(short, "alice", FILES, ttl_s=0.2)
    store.put(long, "alice", FILES, ttl_s=600)
    assert store.sweep_expired() == 0
    time.sleep(0.3)
    with pytest.raises(ResultNotFound):  # expired reads as missing before any sweep
        store.get(short, "face.obj", "alice")
    assert store.sweep_expired() == 1
    assert store.get(long, "face.obj", "alice") == FILES["face.obj"]
    assert store.sweep_expired(now=time.time() + 601) == 1
    with pytest.raises(ResultNotFound):
        store.get(long, "face.obj", "alice")


def test_filesystem_sweep_leaves_nothing_behind(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    for _ in range(3):
        store.put(new_result_id(), "alice", FILES, ttl_s=1)
    assert store.sweep_expired(now=time.time() + 2 * 3600) == 3
    assert [p.name for p in tmp_path.iterdir()] == [".staging"]
    assert list((tmp_path / ".staging").iterdir()) == []


def test_filesystem_failed_put_is_invisible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemStore(tmp_path)
    rid = new_result_id()
    real_write = Path.write_bytes
    calls = []

    def failing_write(self: Path, data: bytes) -> int:
        calls.append(self.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="No space"):
        store.put(rid, "alice", FILES, ttl_s=60)
    monkeypatch.undo()
    with pytest.raises(ResultNotFound):
        store.get(rid, "face.obj", "alice")
    assert not (tmp_path / rid).exists() and list((tmp_path / ".staging").iterdir()) == []


def test_filesystem_readers_never_see_partial_results(tmp_path: Path) -> None:
    """A reader polling while large results are written sees each file whole or not at all."""
    store = FilesystemStore(tmp_path)
    big = {"a.bin": b"a" * 4_000_000, "b.bin": b"b" * 4_000_000}
    ids = [new_result_id() for _ in range(5)]
    seen: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            for rid in ids:
                for name, data in big.items():
                    try:
                        got = store.get(rid, name, "alice")
                    except ResultNotFound:
                        continue
                    seen.append("whole" if got == data else "partial")

    thread = threading.Thread(target=reader)
    thread.start()
    for rid in ids:
        store.put(rid, "alice", big, ttl_s=60)
    done.set()
    thread.join()
    assert "partial" not in seen
    assert all(store.get(rid, "b.bin", "alice") == big["b.bin"] for rid in ids)


def test_s3_result_without_manifest_is_invisible_and_swept(s3_client) -> None:
    """Objects of a put that crashed before its manifest never show, and the sweep removes them."""
    store = S3Store(BUCKET, "res/", client=s3_client)
    rid = new_result_id()
    s3_client.put_object(Bucket=BUCKET, Key=f"res/{rid}/face.obj", Body=b"v")
    with pytest.raises(ResultNotFound):
        store.get(rid, "face.obj", "alice")
    assert store.sweep_expired() == 0  # may still be in progress
    assert "Contents" in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="res/")
    store.sweep_expired(now=time.time() + 2 * 3600)
    assert "Contents" not in s3_client.list_objects_v2(Bucket=BUCKET, Prefix="res/")


def test_s3_objects_carry_tenant_and_expiry(s3_client) -> None:
    store = S3Store(BUCKET, "res/", client=s3_client)
    rid = new_result_id()
    store.put(rid, "alice", FILES, ttl_s=60)
    meta = s3_client.head_object(Bucket=BUCKET, Key=f"res/{rid}/face.png")["Metadata"]
    assert meta["tenant"] == "alice"
    assert time.time() + 50 < float(meta["expires-at"]) <= time.time() + 60


def test_make_store(tmp_path: Path, s3_client) -> None:
    secret = "k" * 40
    assert isinstance(make_store(Settings(jwt_secret=secret, results_dir=tmp_path)), FilesystemStore)
    s3 = make_store(Settings(jwt_secret=secret, storage="s3", s3_bucket=BUCKET, s3_region="us-east-1"))
    assert isinstance(s3, S3Store)
    rid = new_result_id()
    s3.put(rid, "alice", FILES, ttl_s=60)
    assert s3.get(rid, "face.json", "alice") == b"{}"
