"""Shared fixtures: a small flower dataset (real photos when ../shared has them, else made),
workspaces (empty, or with the sample's features already cached), and the markers that let
`make check` leave out what needs a browser, a server or a ResNet50 build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from flower_model.data.synthetic import CLASSES, flower_photo, write_photos

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "flowers-sample"

MARKERS = {
    "slow": "takes a minute or more (exports, the benchmark); CI runs them all",
    "browser": "drives Chromium against a real `streamlit run` server",
    "resnet": "builds the real ResNet50 (here, in a CLI process or in the app's worker)",
}
# Test modules whose every test drives Chromium (test_hosting.py is marked from here).
BROWSER_MODULES = ("tests/browser/test_pages.py", "tests/browser/test_hosting.py")
# Fixtures that build ResNet50 (or need one built): a test that uses them is marked resnet.
RESNET_FIXTURES = {"resnet", "reference", "warm_template", "warm_home", "known_weights_home"}

# The files that take longest (seconds of one worker, clean clone, 2026-12-06), run first:
# `make test` hands each file whole to the next free worker in this order
# (--no-loadscope-reorder), so the last files to start are short ones and the workers end
# together; xdist's own order (the most tests first) left the 125 s benchmark run last.
LONGEST_FIRST = (
    "tests/export/test_export.py",  # 209-226 s
    "tests/test_bench.py",  # 125 s
    "tests/browser/test_hosting.py",  # 125-176 s
    "tests/browser/test_pages.py",  # 93-107 s
    "tests/features/test_distributed.py",  # 67-76 s
    "tests/browser/test_app.py",  # 66-69 s
    "tests/cli/test_cli.py",  # 67-70 s
    "tests/browser/test_cluster.py",  # 55-68 s
    "tests/browser/test_live.py",  # 47 s
    "tests/workflows/test_learning.py",  # 41 s
    "tests/browser/test_accounts.py",  # 34-38 s
    "tests/runs/test_store.py",  # 35 s
)


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def where(item: pytest.Item) -> str:
        return Path(str(item.path)).resolve().relative_to(REPO).as_posix()

    # The longest files first, each file's tests in their own order (a stable sort).
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(where(item), len(rank)))
    for item in items:
        if where(item) in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.resnet)  # its servers train and classify
        if RESNET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.resnet)


@pytest.fixture(autouse=True)
def resnet_only_where_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that builds ResNet50 in this process without the `resnet` marker, so that
    `make check` (which leaves those out) stays fast. Builds in other processes (the CLI's,
    the app's worker) are not seen here: their tests are marked by hand."""
    keras = sys.modules.get("keras")
    if keras is None or request.node.get_closest_marker("resnet") is not None:
        yield
        return

    def refused(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} builds ResNet50: mark it @pytest.mark.resnet")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.applications, "ResNet50", refused)
        yield


def make_photo(path: Path, colour: tuple[int, int, int], seed: int, size=(160, 120)) -> Path:
    """Write one generated flower-like JPEG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flower_photo(np.random.default_rng(seed), colour, size).save(path, quality=90)
    return path


def build_sample(folder: Path, per_class: int) -> Path:
    """Lay out `folder/flowers/<class>/*.jpg` as kagglehub does, with real photos from
    ../shared when present, else generated ones; return `folder`."""
    if not all((SHARED_SAMPLE / "flowers" / name).is_dir() for name in CLASSES):
        write_photos(folder / "flowers", per_class * len(CLASSES), seed=7, size=(160, 120))
        return folder
    for name in CLASSES:
        target = folder / "flowers" / name
        target.mkdir(parents=True, exist_ok=True)
        for photo in sorted((SHARED_SAMPLE / "flowers" / name).glob("*.jpg"))[:per_class]:
            shutil.copy(photo, target / photo.name)
    return folder


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def flower_home(session_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep runs and caches out of the checkout; shared across tests so features are reused."""
    monkeypatch.setenv("FLOWER_LENS_HOME", str(session_home))
    monkeypatch.delenv("FLOWER_LENS_WEIGHTS", raising=False)
    monkeypatch.delenv("FLOWER_LENS_DATA", raising=False)
    # Explore computes a chosen dataset's features in the background: its own tests say so.
    monkeypatch.setenv("FLOWER_LENS_BACKGROUND_FEATURES", "0")
    return session_home


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace of the test's own: empty caches, no runs."""
    home = tmp_path / "home"
    monkeypatch.setenv("FLOWER_LENS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset, 8 photos per class, nested one level down like a kagglehub download."""
    return build_sample(tmp_path_factory.mktemp("sample"), per_class=8)


@pytest.fixture(scope="session")
def sample(sample_dir: Path, session_home: Path):
    """The small dataset, scanned."""
    os.environ["FLOWER_LENS_HOME"] = str(session_home)
    from flower_model.data.dataset import scan_dataset

    return scan_dataset(sample_dir)


@pytest.fixture(scope="session")
def resnet():
    """The real ResNet50 graph, frozen, with seeded random weights (no ImageNet file here)."""
    from flower_model.model.backbone import WeightsChoice, build_resnet50

    return build_resnet50(WeightsChoice("none"), seed=42)


@pytest.fixture(scope="session")
def reference(resnet):
    """The textbook feature extractor with the same weights: ResNet50(pooling='avg')."""
    import keras

    model = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(224, 224, 3)
    )
    model.set_weights(resnet.get_weights())
    return model


# --- Workspaces whose feature cache is filled already -----------------------------------------


@contextmanager
def built_once(resnet) -> Iterator[None]:
    """While the block runs, the feature cache's ResNet50 of random weights and seed 42 is the
    session's `resnet` (the same weights, built once) instead of a new build. Only for
    filling caches: a training's fine-tuning and a loaded run still build their own."""
    from flower_model.model import backbone

    real = backbone.build_resnet50

    def build(choice, seed: int = 42):
        return resnet if (choice.kind, seed) == ("none", 42) else real(choice, seed)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backbone, "build_resnet50", build)
        yield


def cache_features(dataset, resnet, precisions=("auto", "float32")) -> None:
    """Put the real features of every photo of `dataset` (random weights, seed 42) in the
    workspace's feature cache, in each arithmetic a training may ask for."""
    from flower_model.features.extraction import dataset_features

    with built_once(resnet):
        for precision in precisions:
            dataset_features(dataset, "none", precision=precision)


def copy_home(template: Path, home: Path, patch: pytest.MonkeyPatch) -> Path:
    """Make `home` a copy of a workspace template (its caches; it holds no runs) and use it
    for as long as `patch` lasts."""
    shutil.copytree(template, home)
    patch.setenv("FLOWER_LENS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def warm_template(sample, resnet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with no runs whose feature cache holds the sample's real features."""
    home = tmp_path_factory.mktemp("warm-template")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWER_LENS_HOME", str(home))
        cache_features(sample, resnet)
    return home


@pytest.fixture
def warm_home(warm_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace of the test's own, with no runs, whose feature cache holds the sample's
    real features: a training on the sample extracts nothing and builds no ResNet50."""
    return copy_home(warm_template, tmp_path / "home", monkeypatch)


def know_the_weights(template: Path, home: Path) -> Path:
    """Give `home` what the workspace `template` learnt about the random weights of seed 42
    (their identity, and whether bfloat16 agrees with float32 on them), none of its features:
    ResNet50 is built and every photo extracted as in an empty workspace, only the bfloat16
    check (seconds) is not made again. Return `home`."""
    from flower_model.model.backbone import IDENTITIES_FILE
    from flower_model.model.precision import VERDICTS_FILE

    home.mkdir(parents=True, exist_ok=True)
    for name in (IDENTITIES_FILE, VERDICTS_FILE):
        if (template / name).is_file():  # no bfloat16 verdict where the CPU has no bfloat16
            shutil.copy(template / name, home / name)
    return home


@pytest.fixture
def known_weights_home(warm_template: Path, tmp_path: Path, monkeypatch) -> Path:
    """A workspace of the test's own, no runs and no features, that knows the random
    weights (`know_the_weights`): a training extracts every photo, as in an empty one."""
    home = know_the_weights(warm_template, tmp_path / "home")
    monkeypatch.setenv("FLOWER_LENS_HOME", str(home))
    return home


STAND_IN_GRID = 16  # the stand-in backbone's view of a photo: 16×16 cells of 14×14 pixels


def stand_in_features(dataset, seed: int = 42) -> None:
    """Put stand-in features of every photo of `dataset` in the workspace's feature cache, in
    the place of those of the random-weights ResNet50 of `seed` ('none' weights): a training
    with those weights and that seed then extracts nothing and builds no ResNet50.

    For tests of what a training does with features, not of what ResNet50 computes. The
    stand-in is a tiny fixed network on the app's own 224×224 pixels (a ReLU of a random
    projection of 16×16 cell means): the same picture gives the same features, different
    ones differ. Its weights are recorded under an identity of their own, so its features
    never share a cache namespace with ResNet50's; a run trained on them loads under the real
    ResNet50 (of the same seed) only in a workspace that knows that identity.
    """
    from flower_model.core import workspace
    from flower_model.data.images import load_rgb
    from flower_model.features.cache import FeatureCache, cache_key
    from flower_model.model import backbone, precision
    from flower_model.model.backbone import FEATURE_DIM, INPUT_SIZE, WeightsChoice

    choice = WeightsChoice("none")
    identity = f"stand-in-{seed:07d}"
    workspace.remember(backbone.IDENTITIES_FILE, backbone.weights_source(choice, seed), identity)
    precision.record_cosine(identity, 1.0)  # bfloat16 'agrees': auto needs no measurement
    cells = STAND_IN_GRID**2 * 3
    projection = np.random.default_rng(seed).normal(size=(cells, FEATURE_DIM)) / np.sqrt(cells)
    side = INPUT_SIZE // STAND_IN_GRID
    features = {}
    for record in dataset.records:
        pixels = load_rgb(dataset.path_of(record), size=INPUT_SIZE).astype(np.float32) / 255
        grid = STAND_IN_GRID
        means = pixels.reshape(grid, side, grid, side, 3).mean(axis=(1, 3)).reshape(-1)
        features[record.sha256] = np.maximum((means - 0.5) @ projection, 0).astype(np.float32)
    for chosen in {precision.known_precision("auto", identity), "float32"}:
        cache = FeatureCache.described(cache_key(identity, chosen), choice.label, chosen)
        cache.put_many(list(features), np.stack(list(features.values())))


@pytest.fixture(scope="session")
def stand_in_template(sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with no runs whose feature cache holds the sample's stand-in features."""
    home = tmp_path_factory.mktemp("stand-in-template")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWER_LENS_HOME", str(home))
        stand_in_features(sample)
    return home


@pytest.fixture
def stand_in_home(stand_in_template: Path, tmp_path: Path, monkeypatch) -> Path:
    """A workspace of the test's own, with no runs, whose feature cache holds the sample's
    stand-in features (`stand_in_features`): a training on the sample builds no ResNet50."""
    return copy_home(stand_in_template, tmp_path / "home", monkeypatch)


# --- A tiny stand-in for ResNet50 ------------------------------------------------------------


def tiny_resnet50(include_top: bool = False, weights=None, input_shape=(224, 224, 3)):
    """A network shaped like keras.applications.ResNet50(include_top=False) where the app
    looks at it (224×224×3 in, 7×7×2048 out; the stem conv1_*, a last stage conv5_* with
    its BatchNormalization, conv5_block3_out last; named resnet50), in two convolutions:
    built and traced in a moment, for tests of what is done with ResNet50 (fine-tuning its
    last stage, say), not of what it computes."""
    import keras

    assert not include_top and weights is None, "the tiny ResNet50 has no top and no weights"
    image = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(16, 7, strides=32, padding="same", name="conv1_conv")(image)
    x = keras.layers.BatchNormalization(name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.Conv2D(2048, 1, name="conv5_block3_3_conv")(x)
    x = keras.layers.BatchNormalization(name="conv5_block3_3_bn")(x)
    x = keras.layers.Activation("relu", name="conv5_block3_out")(x)
    return keras.Model(image, x, name="resnet50")


@contextmanager
def tiny_backbone() -> Iterator[None]:
    """While the block runs, every ResNet50 of random weights built in this process (for
    features, fine-tuning, or a loaded run) is `tiny_resnet50`, seeded as ResNet50 would be."""
    import keras

    real = keras.applications.ResNet50

    def build(*args, weights=None, **kwargs):
        if weights is not None:
            return real(*args, weights=weights, **kwargs)
        return tiny_resnet50(*args, weights=weights, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.applications, "ResNet50", build)
        yield


# --- The command line, in this process -------------------------------------------------------


def run_cli(capfd: pytest.CaptureFixture, *args: str, home: Path | None = None):
    """Run the command line in this process, as `python -m flower_model ARGS` would without
    starting Python and TensorFlow again; return the exit code and what it printed, as a
    CompletedProcess.

    For what a command prints and returns. What only a process of its own shows (TensorFlow's
    start-up lines on stderr, a killed process) is checked through tests/cli/test_cli.py's
    `cli`, which starts one.
    """
    from flower_model.cli.main import main

    capfd.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        if home is not None:
            patch.setenv("FLOWER_LENS_HOME", str(home))
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse: --help, or arguments it refuses
            code = exit.code if isinstance(exit.code, int) else 1
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(["flower_model", *args], code, out, err)


# In CI the fuzz tests replay the same examples each time, so that a red build is reproducible;
# on a developer's machine they explore new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def ray_cluster():
    """A Ray cluster on 127.0.0.1: a head and a second node, one CPU each, no dashboard;
    stopped at the end of the session (one per test process). Skips
    where Ray is not installed or cannot start."""
    pytest.importorskip("ray", reason="Ray is not installed")
    from ray.cluster_utils import Cluster

    from flower_model.core.cluster import disconnect

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        nodes = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
        )
        nodes.add_node(num_cpus=1)
        nodes.wait_for_nodes(timeout=120)
    except Exception as exc:  # no shared memory, no free ports: nothing to test here
        pytest.skip(f"Ray cannot start a cluster on this machine: {exc}")
    try:
        yield nodes
    finally:
        disconnect()
        nodes.shutdown()
