"""Where the files of one reconstruction live until they expire: a local folder or an S3 bucket.

Both stores keep the same promises:
* a result appears whole or not at all: no reader ever sees a partly written file or result;
* results belong to a tenant: another tenant's read or delete behaves exactly like a missing id;
* results expire ``ttl`` seconds after ``put``: expired ones read as missing at once and their
  bytes are removed by ``sweep_expired``, which the API calls every ``sweep_interval_s``.
Calls block (disk or network I/O): from async code, run them in a worker thread.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Protocol

from face3d.service.config import Settings

_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_META = "_meta.json"  # never clashes with a result file: their names must start with a letter or digit
_STAGING = ".staging"
_ORPHAN_AGE_S = 3600.0  # staging leftovers of a crashed put older than this are removed by the sweep


class ResultNotFound(LookupError):
    """No such result or file for this tenant (missing, expired, or owned by someone else)."""


def new_result_id() -> str:
    """A random, URL-safe, unguessable id (128 bits)."""
    return secrets.token_hex(16)


def _check_id(result_id: str) -> None:
    if not _ID.fullmatch(result_id):
        raise ResultNotFound(result_id)


def _check_name(name: str) -> None:
    """File names are single path components: no separators, no leading dot or underscore, no ``..``."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ResultNotFound(name)


class ResultStore(Protocol):
    """The storage interface the API uses; see the module docstring for the guarantees."""

    def put(self, result_id: str, tenant: str, files: dict[str, bytes], ttl_s: float) -> None:
        """Store ``files`` (name -> bytes) as one result owned by ``tenant``; visible all at once."""
        ...

    def get(self, result_id: str, name: str, tenant: str) -> bytes:
        """One file's bytes; raises ResultNotFound unless ``tenant`` owns a live result holding it."""
        ...

    def delete(self, result_id: str, tenant: str) -> None:
        """Remove a result; raises ResultNotFound as ``get`` does."""
        ...

    def sweep_expired(self, now: float | None = None) -> int:
        """Remove results expired at ``now`` (default: the current time); returns how many."""
        ...


def _validate_put(result_id: str, files: dict[str, bytes], ttl_s: float) -> None:
    _check_id(result_id)
    for name in files:
        try:
            _check_name(name)
        except ResultNotFound:
            raise ValueError(f"invalid result file name {name!r}") from None
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")


class FilesystemStore:
    """Results as folders ``ROOT/<id>/`` holding the files and a ``_meta.json`` (tenant, expiry).

    ``put`` writes everything into ``ROOT/.staging/<random>/`` and renames that folder to
    ``ROOT/<id>`` in one ``rename(2)``, atomic on a POSIX filesystem; ``delete`` renames the folder
    back into staging before removing it, so a reader sees the whole result or nothing. Files are
    not fsynced: results are short-lived cache entries, and a crash loses them as a restart would.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._staging = self.root / _STAGING
        self._staging.mkdir(parents=True, exist_ok=True)

    def put(self, result_id: str, tenant: str, files: dict[str, bytes], ttl_s: float) -> None:
        _validate_put(result_id, files, ttl_s)
        tmp = self._staging / secrets.token_hex(8)
        tmp.mkdir()
        try:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            meta = {"tenant": tenant, "expires_at": time.time() + ttl_s, "files": sorted(files)}
            (tmp / _META).write_text(json.dumps(meta))
            tmp.rename(self.root / result_id)  # fails if the id exists: ids are never reused
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _meta(self, result_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / result_id / _META).read_text())
        except (OSError, ValueError):
            return None

    def _owned(self, result_id: str, tenant: str) -> Path:
        _check_id(result_id)
        meta = self._meta(result_id)
        if meta is None or meta["tenant"] != tenant or meta["expires_at"] <= time.time():
            raise ResultNotFound(result_id)
        return self.root / result_id

    def get(self, result_id: str, name: str, tenant: str) -> bytes:
        _check_name(name)
        folder = self._owned(result_id, tenant)
        try:
            return (folder / name).read_bytes()
        except OSError:  # no such file, or deleted between the ownership check and the read
            raise ResultNotFound(f"{result_id}/{name}") from None

    def _remove(self, result_id: str) -> None:
        trash = self._staging / f"deleted-{secrets.token_hex(8)}"
        try:
            (self.root / result_id).rename(trash)
        except FileNotFoundError:  # a concurrent delete or sweep got there first
            return
        shutil.rmtree(trash, ignore_errors=True)

    def delete(self, result_id: str, tenant: str) -> None:
        self._owned(result_id, tenant)
        self._remove(result_id)

    def sweep_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        removed = 0
        for folder in self.root.iterdir():
            if folder.name == _STAGING or not _ID.fullmatch(folder.name):
                continue
            meta = self._meta(folder.name)
            if meta is not None and meta["expires_at"] <= now:
                self._remove(folder.name)
                removed += 1
        for leftover in self._staging.iterdir():
            try:
                stale = leftover.stat().st_mtime < now - _ORPHAN_AGE_S
            except FileNotFoundError:  # a concurrent delete finished removing it
                continue
            if stale:
                shutil.rmtree(leftover, ignore_errors=True)
        return removed


class S3Store:
    """Results as objects ``<prefix><id>/<name>`` plus a manifest ``<prefix><id>/_meta.json``.

    Each object PUT is atomic; the manifest (tenant, expiry, file list) is written last and every
    read checks it first, so a result becomes visible only once all of its files exist. ``delete``
    removes the manifest first for the same reason. Tenant and expiry are also set as object
    metadata so a bucket lifecycle rule or an operator can act on objects alone.
    """

    def __init__(
        self, bucket: str, prefix: str = "", endpoint_url: str = "", region: str = "", client: Any = None
    ) -> None:
        if client is None:
            try:
                import boto3
            except ImportError:
                raise RuntimeError("storage 's3' needs boto3: pip install 'face3d[s3]'") from None
            client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region or None)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, result_id: str, name: str) -> str:
        return f"{self.prefix}{result_id}/{name}"

    def put(self, result_id: str, tenant: str, files: dict[str, bytes], ttl_s: float) -> None:
        _validate_put(result_id, files, ttl_s)
        expires_at = time.time() + ttl_s
        tags = {"tenant": tenant, "expires-at": f"{expires_at:.3f}"}
        for name, data in files.items():
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(result_id, name), Body=data, Metadata=tags
            )
        meta = {"tenant": tenant, "expires_at": expires_at, "files": sorted(files)}
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(result_id, _META), Body=json.dumps(meta).encode(), Metadata=tags
        )

    def _read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def _owned(self, result_id: str, tenant: str) -> dict[str, Any]:
        _check_id(result_id)
        raw = self._read(self._key(result_id, _META))
        meta = json.loads(raw) if raw is not None else None
        if meta is None or meta["tenant"] != tenant or meta["expires_at"] <= time.time():
            raise ResultNotFound(result_id)
        return meta

    def get(self, result_id: str, name: str, tenant: str) -> bytes:
        _check_name(name)
        meta = self._owned(result_id, tenant)
        data = self._read(self._key(result_id, name)) if name in meta["files"] else None
        if data is None:
            raise ResultNotFound(f"{result_id}/{name}")
        return data

    def _remove(self, result_id: str, names: list[str]) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(result_id, _META))
        if names:
            objects = [{"Key": self._key(result_id, n)} for n in names]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    def delete(self, result_id: str, tenant: str) -> None:
        meta = self._owned(result_id, tenant)
        self._remove(result_id, meta["files"])

    def sweep_expired(self, now: float | None = None) -> int:
        """Delete expired results, and objects of a crashed ``put`` (no manifest) older than an hour."""
        now = time.time() if now is None else now
        by_id: dict[str, list[dict[str, Any]]] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        ):
            for obj in page.get("Contents", []):
                result_id, _, name = obj["Key"][len(self.prefix) :].partition("/")
                by_id.setdefault(result_id, []).append(
                    {"name": name, "modified": obj["LastModified"].timestamp()}
                )
        removed = 0
        for result_id, objects in by_id.items():
            names = [o["name"] for o in objects if o["name"] != _META]
            if len(names) == len(objects):  # no manifest: a put in progress, or one that crashed
                if max(o["modified"] for o in objects) < now - _ORPHAN_AGE_S:
                    self._remove(result_id, names)
                continue
            raw = self._read(self._key(result_id, _META))
            if raw is not None and json.loads(raw)["expires_at"] <= now:
                self._remove(result_id, names)
                removed += 1
        return removed


def make_store(settings: Settings) -> ResultStore:
    """The store ``settings.storage`` names."""
    if settings.storage == "s3":
        return S3Store(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url, settings.s3_region)
    return FilesystemStore(settings.results_dir)
