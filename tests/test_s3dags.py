"""A DAGs folder in S3: the mirror, against moto's S3 server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import structlog

from orchestrator.dagfiles._s3 import S3DagSync, parse_s3_url
from orchestrator.errors import ConfigError
from orchestrator.resources._aws import client_kwargs
from orchestrator.resources._connections import Connection
from tests.helpers import s3_client


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/dags/", ("bucket", "dags/")),
        ("s3://bucket/dags", ("bucket", "dags/")),
        ("s3://bucket/a/b/", ("bucket", "a/b/")),
        ("s3://bucket", ("bucket", "")),
    ],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    """The bucket and a prefix ending in '/' (or empty)."""
    assert parse_s3_url(url) == expected


def test_an_s3_url_without_a_bucket_names_the_setting() -> None:
    """s3:///x is refused with the setting's name and the expected form."""
    with pytest.raises(ConfigError, match=r"setting dags: 's3:///x' names no bucket"):
        parse_s3_url("s3:///x")


def test_client_kwargs_from_an_airflow_style_connection() -> None:
    """login/password are the keys; endpoint_url and region_name come from the extras."""
    conn = Connection.from_uri(
        "aws_default", "aws://AK:SK@/?endpoint_url=http://127.0.0.1:1&region_name=eu-west-1"
    )
    assert client_kwargs(conn) == {
        "endpoint_url": "http://127.0.0.1:1",
        "region_name": "eu-west-1",
        "aws_access_key_id": "AK",
        "aws_secret_access_key": "SK",
    }
    assert client_kwargs(None) == {}


async def new_bucket(s3: Any) -> str:
    name = f"dags-{uuid.uuid4().hex[:12]}"
    await s3.create_bucket(Bucket=name)
    return name


def files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text() for p in folder.rglob("*") if p.is_file()
    }


async def test_sync_mirrors_the_prefix_and_only_fetches_changes(
    aws_conn: str, tmp_path: Path
) -> None:
    """New, changed and deleted keys reach the mirror; unchanged ones are not fetched again."""
    async with s3_client(aws_conn) as s3:
        bucket = await new_bucket(s3)
        await s3.put_object(Bucket=bucket, Key="dags/a.py", Body=b"A = 1\n")
        await s3.put_object(Bucket=bucket, Key="dags/sub/b.py", Body=b"B = 1\n")
        await s3.put_object(Bucket=bucket, Key="dags/notes.txt", Body=b"text")
        await s3.put_object(Bucket=bucket, Key="other/c.py", Body=b"C = 1\n")
        mirror = tmp_path / "mirror"
        sync = S3DagSync(f"s3://{bucket}/dags/", mirror)
        first = await sync.sync(s3)
        assert (first.downloaded, first.deleted) == (3, 0)
        assert files(mirror) == {"a.py": "A = 1\n", "sub/b.py": "B = 1\n", "notes.txt": "text"}
        assert (await sync.sync(s3)).downloaded == 0
        await s3.put_object(Bucket=bucket, Key="dags/a.py", Body=b"A = 2\n")
        await s3.delete_object(Bucket=bucket, Key="dags/sub/b.py")
        await s3.put_object(Bucket=bucket, Key="dags/d.py", Body=b"D = 1\n")
        second = await sync.sync(s3)
        assert (second.downloaded, second.deleted) == (2, 1)
        assert files(mirror) == {"a.py": "A = 2\n", "d.py": "D = 1\n", "notes.txt": "text"}


async def test_a_fresh_sync_removes_stale_files_and_skips_escaping_keys(
    aws_conn: str, tmp_path: Path
) -> None:
    """Files left in the mirror from before are removed; a key with '..' is skipped and logged."""
    async with s3_client(aws_conn) as s3:
        bucket = await new_bucket(s3)
        await s3.put_object(Bucket=bucket, Key="dags/a.py", Body=b"A = 1\n")
        await s3.put_object(Bucket=bucket, Key="dags/../evil.py", Body=b"EVIL = 1\n")
        mirror = tmp_path / "mirror"
        (mirror / "old").mkdir(parents=True)
        (mirror / "old" / "gone.py").write_text("X = 1\n")
        with structlog.testing.capture_logs() as logs:
            await S3DagSync(f"s3://{bucket}/dags/", mirror).sync(s3)
        assert files(mirror) == {"a.py": "A = 1\n"}
        assert not (tmp_path / "evil.py").exists()
        assert any(e["event"].startswith("S3 key skipped") for e in logs)
