"""Uploaded datasets are their uploader's: private, shared by link, changed and deleted by them
alone, within a share of the disk of their own; untouched ones expire."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flower_model.core.errors import DatasetError
from flower_model.data import owners, uploads
from flower_model.data.uploads import add_photos, create_dataset, delete_dataset, expire_uploads
from tests.data.test_uploads import jpeg

ANA, BEN = "account:ana@example.org", "session:ben"


def test_an_upload_is_private_until_its_link_is_shared(fresh_home: Path) -> None:
    folder = create_dataset("Ana garden", owner=ANA)
    add_photos(folder, "rose", [("a.jpg", jpeg((200, 0, 0)))], owner=ANA)
    token = owners.ownership_of(folder).token
    assert len(token) >= 20
    assert owners.may_open(folder / "rose", ANA)  # hers, from any session of hers
    assert not owners.may_open(folder, BEN)
    with pytest.raises(DatasetError, match="opens only with the share link"):
        owners.check_may_open(folder, BEN, {"a guess"})
    assert owners.may_open(folder, BEN, {token})  # the link's token
    hosts = create_dataset("the host")  # no owner: the host's, open to all
    assert owners.may_open(hosts, BEN)


def test_only_its_owner_or_the_host_changes_or_deletes_an_upload(fresh_home: Path) -> None:
    folder = create_dataset("Ana flowers", owner=ANA)
    for action in (
        lambda: add_photos(folder, "rose", [("a.jpg", jpeg((200, 0, 0)))], owner=BEN),
        lambda: uploads.add_zip(folder, b"", owner=BEN),
        lambda: delete_dataset(folder, owner=BEN),
    ):
        with pytest.raises(DatasetError, match="only the visitor who uploaded"):
            action()
    assert folder.is_dir()
    delete_dataset(folder, owner=ANA)
    assert not folder.exists() and not owners.ownership_file(folder).exists()
    theirs = create_dataset("Ben flowers", owner=BEN)
    delete_dataset(theirs)  # the host (the command line) may delete any
    assert not theirs.exists()


def test_a_visitor_beyond_their_share_is_refused_while_another_still_uploads(
    fresh_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(uploads.OWNER_DATASETS_ENV, "2")
    for name in ("one", "two"):
        create_dataset(name, owner=ANA)
    with pytest.raises(DatasetError, match="you already keep 2 uploaded datasets"):
        create_dataset("three", owner=ANA)
    create_dataset("one", owner=BEN)
    monkeypatch.setenv(uploads.OWNER_MB_ENV, "0.01")  # about 10 KB each
    noise = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")  # noise does not compress: about 19 KB
    big = buffer.getvalue()
    report = add_photos(create_dataset("big", owner=BEN), "leaf", [("b.jpg", big)], owner=BEN)
    assert len(big) > 0.01 * 2**20
    assert report.refused[0].reason.endswith("limit of 0 MB per visitor")


def test_uploads_untouched_for_the_hosts_days_expire(fresh_home: Path) -> None:
    old = create_dataset("old", owner=ANA)
    add_photos(old, "rose", [("a.jpg", jpeg((200, 0, 0)))], owner=ANA)
    recent = create_dataset("recent", owner=BEN)
    month_ago = time.time() - 31 * 86400
    for path in (old, old / "rose", owners.ownership_file(old)):
        os.utime(path, (month_ago, month_ago))
    assert expire_uploads(days=30) == [old]
    assert not old.exists() and recent.is_dir()
    owners.touch(recent)  # opened now: kept
    assert expire_uploads(days=30) == []
