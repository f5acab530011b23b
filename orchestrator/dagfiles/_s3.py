"""A DAGs folder in S3 (``ORCHESTRATOR_DAGS=s3://bucket/prefix/``), mirrored locally.

Rules:
1. The mirror is a plain folder in the home (``dags-s3/``); the live DAG folder
   watches it like any other, so a synced file is imported the same way as an
   edited one.
2. A sync lists the prefix (ListObjectsV2) and downloads only the keys whose ETag
   changed; a key gone from S3 is deleted from the mirror. Each file is written to
   a hidden temporary name and renamed into place, so an import never reads half
   a file.
3. A key that would land outside the mirror (``..``, an absolute path) is skipped
   with a warning naming it.
4. The daemon syncs every ``ORCHESTRATOR_DAGS_SYNC_INTERVAL`` seconds (5; MWAA syncs
   every 30), and at once when an S3 event for a key under the prefix arrives on a
   queue it reads (the bucket's notifications to SQS): ``changed``. A failed sync is
   logged with the bucket and prefix and tried again next time; the mirror keeps
   what it had.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import structlog
from aiobotocore.config import AioConfig

from orchestrator._settings import Settings
from orchestrator.errors import ConfigError
from orchestrator.resources._aws import aws_client
from orchestrator.store import Store

__all__ = ["S3DagSync", "SyncResult", "parse_s3_url", "s3_mirrors"]

log = structlog.get_logger("orchestrator.s3dags")

# A sync that cannot reach S3 fails in seconds and is tried again at the next round.
_CONFIG = AioConfig(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2})


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix/``; the prefix is "" or ends with "/"."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"setting dags: {url!r} names no bucket (use s3://bucket/prefix/)")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


@dataclass(frozen=True, slots=True)
class SyncResult:
    downloaded: int
    deleted: int


class S3DagSync:
    def __init__(self, url: str, mirror: Path, *, only: str | None = None) -> None:
        self.url = url
        self.bucket, self.prefix = parse_s3_url(url)
        self.mirror = mirror
        self.only = only  # the one key under the prefix to mirror (a plugins.zip)
        self._etags: dict[str, str] = {}  # relative path -> ETag of the mirrored copy
        self._changed = anyio.Event()

    def changed(self, event: dict[str, Any]) -> None:
        """An event from a queue: sync now if it tells of a key under the prefix (rule 4)."""
        detail = event.get("detail") or {}
        bucket = (detail.get("bucket") or {}).get("name")
        key = (detail.get("object") or {}).get("key")
        ours = event.get("source") == "aws.s3" and bucket == self.bucket
        if ours and isinstance(key, str) and key.startswith(self.prefix):
            self._changed.set()

    async def _wait(self, interval: float) -> None:
        with anyio.move_on_after(interval):
            await self._changed.wait()
        self._changed = anyio.Event()

    async def sync(self, client: Any) -> SyncResult:
        """Make the mirror match the prefix (rule 2)."""
        self.mirror.mkdir(parents=True, exist_ok=True)
        remote = await self._list(client)
        downloaded = 0
        for rel, etag in sorted(remote.items()):
            path = self.mirror / rel
            if self._etags.get(rel) == etag and path.exists():
                continue
            response = await client.get_object(Bucket=self.bucket, Key=self.prefix + rel)
            async with response["Body"] as body:
                data = await body.read()
            await anyio.to_thread.run_sync(_write_atomically, path, data)
            self._etags[rel] = etag
            downloaded += 1
        deleted = await anyio.to_thread.run_sync(self._delete_missing, set(remote))
        for rel in set(self._etags) - set(remote):
            del self._etags[rel]
        if downloaded or deleted:
            log.info("DAGs synced from S3", url=self.url, downloaded=downloaded, deleted=deleted)
        return SyncResult(downloaded, deleted)

    async def _list(self, client: Any) -> dict[str, str]:
        remote: dict[str, str] = {}
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix) :]
                if not rel or rel.endswith("/") or (self.only and rel != self.only):
                    continue  # the prefix itself, a "folder" marker, or not the one key
                if not _inside(rel):
                    log.warning("S3 key skipped: outside the DAGs folder", key=obj["Key"])
                    continue
                remote[rel] = obj["ETag"]
        return remote

    def _delete_missing(self, keep: set[str]) -> int:
        deleted = 0
        if not self.mirror.is_dir():
            return 0
        for path in sorted(self.mirror.rglob("*"), reverse=True):  # files before folders
            rel = path.relative_to(self.mirror).as_posix()
            if path.is_file() and rel not in keep:
                path.unlink()
                deleted += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        return deleted

    async def sync_with(self, store: Store, settings: Settings) -> SyncResult:
        """One sync through a client made from the AWS connection."""
        async with aws_client("s3", store, settings, config=_CONFIG) as client:
            return await self.sync(client)

    async def keep_in_sync(self, store: Store, settings: Settings) -> None:
        """Sync every ``dags_sync_interval`` seconds until cancelled (rule 4)."""
        while True:
            try:
                async with aws_client("s3", store, settings, config=_CONFIG) as client:
                    while True:
                        await self._wait(settings.dags_sync_interval)
                        await self.sync(client)
            except Exception as exc:  # botocore, network: the next round tries again
                log.warning("DAGs sync from S3 failed", url=self.url, error=repr(exc))
                await anyio.sleep(settings.dags_sync_interval)


def s3_mirrors(settings: Settings) -> list[S3DagSync]:
    """The S3 mirrors the settings ask for: the DAGs folder, the plugins (a prefix, or one
    ``.zip`` key as MWAA's ``plugins.zip``)."""
    mirrors = []
    if settings.dags.startswith("s3://"):
        mirrors.append(S3DagSync(settings.dags, settings.dags_folder))
    url = settings.plugins
    if url.startswith("s3://") and url.endswith(".zip"):
        parent, _, name = url.rpartition("/")
        mirrors.append(S3DagSync(parent + "/", settings.plugins_location.parent, only=name))
    elif url.startswith("s3://"):
        mirrors.append(S3DagSync(url, settings.plugins_location))
    return mirrors


def _inside(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return not rel.startswith("/") and ".." not in parts and "\\" not in rel


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.s3sync")
    tmp.write_bytes(data)
    os.replace(tmp, path)
