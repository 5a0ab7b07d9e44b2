"""Which weights are used, where they are looked for, and what is said when there are none."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from flower_model.core.errors import WeightsError
from flower_model.model import backbone as bb
from flower_model.model.backbone import (
    WeightsChoice,
    build_resnet50,
    resolve_weights,
    weights_status,
)


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras" / "models" / bb.WEIGHTS_FILE


def test_none_means_no_transfer_learning() -> None:
    choice = resolve_weights("none")
    assert choice == WeightsChoice("none")
    assert not choice.transfer_learning and "no transfer learning" in choice.label


def test_imagenet_uses_the_keras_cache_file_when_present(keras_home: Path) -> None:
    assert resolve_weights("imagenet") == WeightsChoice("imagenet", None)
    assert not weights_status().available
    keras_home.parent.mkdir(parents=True)
    keras_home.write_bytes(b"h5")
    assert resolve_weights("imagenet") == WeightsChoice("imagenet", keras_home)
    assert weights_status().available


def test_environment_variable_names_a_file(tmp_path: Path, keras_home: Path, monkeypatch) -> None:
    named = tmp_path / "w.h5"
    named.write_bytes(b"h5")
    monkeypatch.setenv(bb.WEIGHTS_ENV, str(named))
    assert resolve_weights("imagenet").path == named
    monkeypatch.setenv(bb.WEIGHTS_ENV, str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsError, match="not a file"):
        resolve_weights("imagenet")
    monkeypatch.setenv(bb.WEIGHTS_ENV, "none")
    assert resolve_weights("imagenet").kind == "none"


def test_missing_weights_file_says_where_it_goes(tmp_path: Path, keras_home: Path) -> None:
    with pytest.raises(WeightsError) as caught:
        resolve_weights(tmp_path / "nope.h5")
    assert str(keras_home) in str(caught.value) and "none" in str(caught.value)


@pytest.mark.resnet
def test_offline_imagenet_download_fails_with_directions(
    keras_home: Path, monkeypatch, request: pytest.FixtureRequest
) -> None:
    # Offline as a user's machine can be: every download goes to a proxy that refuses it.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    # urlopen (under Keras' download) reads the proxies once, when it first builds its opener,
    # and keeps that opener for the process: a fresh one here, sees this proxy; and a fresh one
    # afterwards, or every later urlopen in this test process would go to the refusing proxy
    # (the hosting tests' health checks did: "Connection refused" for 240 s).
    urllib.request.install_opener(None)
    request.addfinalizer(lambda: urllib.request.install_opener(None))
    status = weights_status()
    assert not status.available and str(keras_home) in status.message
    with pytest.raises(WeightsError) as caught:
        build_resnet50(resolve_weights("imagenet"))
    message = str(caught.value)
    assert "could not be downloaded" in message
    assert str(keras_home) in message and "--weights" in message and "'none'" in message


def test_weights_file_is_loaded(resnet, tmp_path: Path) -> None:
    first = resnet  # random weights of seed 42
    path = tmp_path / "resnet.weights.h5"
    first.save_weights(path)
    loaded = build_resnet50(WeightsChoice("imagenet", path))
    assert bb.weights_identity(loaded) == bb.weights_identity(first)
    assert bb.weights_identity(
        build_resnet50(WeightsChoice("none"), seed=4)
    ) != bb.weights_identity(first)
    assert not loaded.trainable


@pytest.mark.resnet
def test_a_file_that_is_not_resnet_weights_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="cannot load ResNet50 weights"):
        build_resnet50(WeightsChoice("imagenet", bad))


def test_the_identity_of_weights_built_before_is_known_without_building(
    resnet, tmp_path: Path, fresh_home: Path
) -> None:
    from flower_model.model.backbone import (
        identity_of,
        known_identity,
        weights_identity,
        weights_source,
    )

    random = WeightsChoice("none")
    assert known_identity(random, 42) is None
    # `resnet`: build_resnet50(random, seed=42), built once for the session.
    assert identity_of(resnet, random, 42) == weights_identity(resnet)
    assert known_identity(random, 42) == weights_identity(resnet)
    assert known_identity(random, 43) is None  # another seed, other weights
    # A weights file is known by its path, size and time: a changed file is another source.
    file = tmp_path / "weights.h5"
    file.write_bytes(b"weights")
    source = weights_source(WeightsChoice("imagenet", file), 3)
    os.utime(file, ns=(1, 1))
    assert weights_source(WeightsChoice("imagenet", file), 3) != source
    assert weights_source(WeightsChoice("imagenet", None), 3) is None  # still to download
