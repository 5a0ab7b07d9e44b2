"""Training: events, the feature cache across runs, cancellation, best epoch, failures.

Most tests train on the sample's features cached already (`stand_in_home`: stand-in features,
no ResNet50 at all; `warm_home`: ResNet50's own), as every training after the first does;
fine-tuning is tried on `tiny_backbone`'s network of ResNet50's layer names; those marked
resnet build ResNet50 for what only it does (extracting, loading).
"""

from __future__ import annotations

import json
import queue
import threading

import numpy as np
import pytest

from flower_model.core.errors import TrainingCancelled, WeightsError
from flower_model.core.events import CancelToken
from flower_model.data.dataset import split_dataset
from flower_model.features.extractor import FeatureExtractor
from flower_model.model.config import TrainConfig
from flower_model.model.fitting import fit_head
from flower_model.model.head import build_head
from flower_model.runs import store as runs
from flower_model.workflows.train import train
from tests.conftest import built_once, stand_in_features, tiny_backbone

FAST = TrainConfig(epochs=3, batch_size=8, weights="none", patience=0)


def test_training_saves_a_complete_run(sample, stand_in_home) -> None:
    events = []
    info = train(sample, FAST, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert {"phase", "extract", "batch", "epoch"} <= set(kinds)
    epochs = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert all(e.val_loss is not None and e.eta is not None for e in epochs)
    assert epochs[-1].eta == 0
    batch = next(e for e in events if e.kind == "batch")
    assert batch.batches == 4 and batch.loss > 0  # 30 training photos in batches of 8

    meta = info.metadata
    assert meta.class_names == sample.class_names
    assert meta.weights.label == "none (no transfer learning)"
    assert meta.weights.transfer_learning is False
    assert meta.dataset.fingerprint == sample.fingerprint
    assert meta.input_size == (224, 224, 3) and "preprocess_input" in meta.preprocessing
    assert meta.epochs_completed == 3 and len(meta.history["val_loss"]) == 3
    assert meta.config.learning_rate == 1e-3 and meta.standardised_features
    assert {"tensorflow", "keras", "python"} <= set(meta.versions)
    # The leak-free split, recorded with its groups: each group on one side, about 20 % held out.
    assert set(meta.split.train).isdisjoint(meta.split.val)
    assert meta.split == split_dataset(sample, 0.2, 42, groups=meta.split.groups)
    for group in meta.split.groups:
        assert set(group) <= set(meta.split.train) or set(group) <= set(meta.split.val)
    assert abs(len(meta.split.val) - 10) <= sum(len(g) - 1 for g in meta.split.groups)
    assert meta.evaluation.count == len(meta.split.val)
    # Every held-out photo's probabilities are kept, and the calibration measured on them.
    assert meta.evaluation.paths == meta.split.val
    assert len(meta.evaluation.probabilities) == len(meta.split.val)
    assert meta.calibration is not None and meta.calibration.count == len(meta.split.val)
    # Saved, listed, and the event log kept with it; nothing half-written left behind.
    assert [r.run_id for r in runs.list_runs()] == [info.run_id]
    logged = [json.loads(line) for line in (info.path / runs.EVENTS_FILE).read_text().splitlines()]
    assert logged[0]["kind"] == "start" and logged[-1]["kind"] == "end"
    assert logged[0]["run_id"] == info.run_id
    assert not list(stand_in_home.joinpath("runs").glob(".partial-*"))


@pytest.mark.resnet
def test_second_identical_run_computes_no_features(
    sample, known_weights_home, resnet, monkeypatch
) -> None:
    with built_once(resnet):  # the session's ResNet50 of the same weights extracts
        first = train(sample, FAST)
    assert first.metadata.features.computed == len(sample.records)
    calls: list[int] = []
    real_run = FeatureExtractor.run
    monkeypatch.setattr(
        FeatureExtractor, "run", lambda self, x: calls.append(len(x)) or real_run(self, x)
    )
    second = train(sample, FAST)
    assert calls == []
    features = second.metadata.features
    assert (features.cached, features.computed) == (len(sample.records), 0)
    # Same data, same seed, same features: the same model.
    assert second.metadata.history == first.metadata.history


def test_best_completed_epoch_is_kept(sample, stand_in_home) -> None:
    info = train(
        sample, TrainConfig(epochs=6, batch_size=8, weights="none", patience=0, learning_rate=0.003)
    )
    history = info.metadata.history["val_loss"]
    best = info.metadata.best_epoch
    assert history[best - 1] == min(history)
    # The saved model is the best epoch's: its held-out loss is that epoch's val_loss (Keras'
    # loss is exact where the evaluation clips a probability at 1e-7: a rate that makes
    # predictions that sure would make them differ).
    assert info.metadata.evaluation.loss == pytest.approx(min(history), rel=1e-3)
    accuracy = info.metadata.history["val_accuracy"][best - 1]
    assert info.metadata.evaluation.accuracy == pytest.approx(accuracy)


def test_cancel_from_another_thread_keeps_completed_epochs(sample, stand_in_home) -> None:
    cancel = CancelToken()
    events: queue.Queue = queue.Queue()
    result: dict = {}
    config = TrainConfig(epochs=200, batch_size=2, weights="none", patience=0)

    def run() -> None:
        result["info"] = train(sample, config, on_event=events.put, cancel=cancel)

    worker = threading.Thread(target=run)
    worker.start()
    seen = []
    while True:
        event = events.get(timeout=120)
        seen.append(event)
        if event.kind == "epoch" and event.epoch == 2:
            cancel.cancel()
            break
    worker.join(timeout=60)
    assert not worker.is_alive()
    while not events.empty():
        seen.append(events.get())
    after_cancel = seen[seen.index(event) + 1 :]
    # Stopped within one batch of the request: no further epoch completed.
    assert not [e for e in after_cancel if e.kind == "epoch"]
    info = result["info"]
    assert info.metadata.stopped == "stopped by the user"
    assert info.metadata.epochs_completed == 2
    assert len(info.metadata.history["loss"]) == 2


def test_stop_before_the_first_epoch_saves_nothing(sample, stand_in_home) -> None:
    events, cancel = [], CancelToken()

    def on_event(event) -> None:
        events.append(event)
        if event.kind == "batch":
            cancel.cancel()

    config = TrainConfig(epochs=5, batch_size=2, weights="none")
    with pytest.raises(TrainingCancelled, match="nothing was saved"):
        train(sample, config, on_event=on_event, cancel=cancel)
    assert sum(e.kind == "batch" for e in events) == 1
    assert events[-1].kind == "cancelled"
    assert runs.list_runs() == [] and not list((stand_in_home / "runs").iterdir())


def test_failure_is_reported_and_leaves_no_run(sample, fresh_home, tmp_path) -> None:
    events = []
    config = TrainConfig(epochs=1, weights=str(tmp_path / "missing.h5"))
    with pytest.raises(WeightsError):
        train(sample, config, on_event=events.append)
    assert events[-1].kind == "error" and "does not exist" in events[-1].message
    assert runs.list_runs() == [] and not list((fresh_home / "runs").iterdir())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs"),
        ("batch_size", 0, "batch size"),
        ("learning_rate", -1.0, "learning rate"),
        ("mode", "magic", "mode"),
        ("val_fraction", 1.0, "validation share"),
        ("patience", -1, "patience"),
    ],
)
def test_bad_config_is_refused(field: str, value, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_fine_tune_trains_the_head_then_conv5_and_keeps_earlier_layers(sample, fresh_home) -> None:
    from flower_model.model.backbone import WeightsChoice, build_resnet50
    from flower_model.runs.store import load_model

    config = TrainConfig(
        epochs=2, batch_size=8, weights="none", mode="finetune", fine_tune_learning_rate=1e-3
    )
    events = []
    with tiny_backbone():  # ResNet50's layer names, two convolutions
        info = train(sample, config, on_event=events.append)
        tuned = load_model(info).get_layer("resnet50")
        start = build_resnet50(WeightsChoice("none"), seed=42)  # as training started from it
    meta = info.metadata
    assert meta.config.mode == "finetune" and meta.features.computed == len(sample.records)
    # Two epochs of the head on features, then two of conv5 and the head on photos.
    assert meta.fine_tuned_after == 2 and meta.epochs_completed == 4
    assert len(meta.history["val_loss"]) == 4
    phases = [e.message for e in events if e.kind == "phase"]
    assert phases.index("training the head") < phases.index(
        "fine-tuning conv5 and the head on photos"
    )
    conv1 = tuned.get_layer("conv1_conv").kernel.numpy()
    assert np.array_equal(conv1, start.get_layer("conv1_conv").kernel.numpy())
    conv5 = tuned.get_layer("conv5_block3_3_conv").kernel.numpy()
    assert not np.array_equal(conv5, start.get_layer("conv5_block3_3_conv").kernel.numpy())
    # BatchNorm statistics stay those of the start.
    bn = "conv5_block3_3_bn"
    np.testing.assert_array_equal(
        tuned.get_layer(bn).moving_mean.numpy(), start.get_layer(bn).moving_mean.numpy()
    )


def test_the_head_trains_on_standardised_features_and_saves_the_seeds_head() -> None:
    import keras

    from flower_model.model.fitting import fit_head
    from flower_model.model.head import build_head
    from flower_model.model.scaling import standardisation

    rng = np.random.default_rng(0)
    # Features like random ResNet50's: large offsets shared by every photo, a dead column.
    x = rng.normal(40.0, 3.0, (60, 2048)).astype("float32")
    x[:, :5] += np.eye(5)[np.arange(60) % 5] * 10
    x[:, 7] = 0.0
    y = np.arange(60) % 5
    head = build_head(5)
    config = TrainConfig(epochs=3, batch_size=16, weights="none", patience=0)
    fit = fit_head(head, (x[:50], y[:50]), (x[50:], y[50:]), config)
    assert fit.standardised and fit.epochs_completed == 3
    # The saved head takes raw features and gives what the trained one gave on standardised ones.
    mean, std = standardisation(x[:50])
    unfolded = keras.models.clone_model(head)
    unfolded.set_weights(head.get_weights())
    first = unfolded.get_layer("dense_256")
    kernel, bias = (w.astype("float64") for w in first.get_weights())
    first.set_weights([(kernel * std[:, None]).astype("float32"), (bias + mean @ kernel)])
    scaled = ((x - mean) / std).astype("float32")
    np.testing.assert_allclose(
        head.predict(x, verbose=0), unfolded.predict(scaled, verbose=0), atol=1e-5
    )
    assert [type(layer).__name__ for layer in head.layers][1:] == [
        "Dense", "Dropout", "Dense", "Dropout", "Dense", "Dropout", "Dense"
    ]  # fmt: skip


def test_training_does_not_reseed_the_process_random_generators(sample, stand_in_home) -> None:
    import random

    # Two visitors' sessions share one process: a training must not reset its generators.
    draws = []
    for seed in (1, 2):
        np.random.seed(seed)
        random.seed(seed)
        state = np.random.get_state()[1].copy()
        train(sample, FAST)
        assert np.array_equal(np.random.get_state()[1], state)  # not even drawn from
        draws.append(random.random())
    assert draws[0] != draws[1]


def test_a_stop_while_fine_tuning_keeps_the_trained_head(sample, fresh_home) -> None:
    from flower_model.core.events import FINE_TUNING_PHASE
    from flower_model.inference.predict import Classifier

    cancel = CancelToken()

    def on_event(event) -> None:
        if event.kind == "phase" and event.message == FINE_TUNING_PHASE:
            cancel.cancel()  # before any fine-tuning epoch completes

    config = TrainConfig(epochs=2, batch_size=8, weights="none", mode="finetune")
    with tiny_backbone():  # ResNet50's layer names, two convolutions
        info = train(sample, config, on_event=on_event, cancel=cancel)
        meta = info.metadata
        assert meta.stopped == "stopped by the user" and meta.fine_tuned_after is None
        assert meta.epochs_completed == 2  # the head's epochs, kept
        # The saved model is the head's, as it was before fine-tuning began: conv5 untouched
        # by the batch that ran, and the held-out probabilities those the run recorded.
        from flower_model.model.backbone import WeightsChoice, build_resnet50

        classifier = Classifier.load(info.run_id)
        start = build_resnet50(WeightsChoice("none"), seed=42).get_layer("conv5_block3_3_conv")
        saved = classifier.networks.resnet.get_layer("conv5_block3_3_conv")
        np.testing.assert_array_equal(saved.kernel.numpy(), start.kernel.numpy())
        paths = [sample.root / path for path in meta.split.val]
        loss = -np.mean(
            [
                np.log(max(p.probabilities[sample.class_names.index(path.parent.name)], 1e-7))
                for p, path in zip(classifier.classify(paths), paths, strict=True)
            ]
        )
    assert loss == pytest.approx(meta.evaluation.loss, rel=2e-2)


def test_copies_of_a_photo_are_trained_on_or_held_out_together(tmp_path, fresh_home) -> None:
    """The same picture twice, once as is and once resaved: never one copy in training and
    the other held out, whatever the seed."""
    from PIL import Image

    from flower_model.data.dataset import scan_dataset
    from flower_model.data.synthetic import write_photos

    written = write_photos(tmp_path / "photos", 30, seed=11, size=(96, 72), kind="striped")
    pairs = []
    for photo in written[:10]:
        copy = photo.path.with_name(f"copy_{photo.path.name}")
        copy.write_bytes(photo.path.read_bytes())
        resaved = photo.path.with_name(f"resaved_{photo.path.stem}.png")
        Image.open(photo.path).save(resaved)
        pairs.append({p.relative_to(tmp_path / "photos").as_posix() for p in (photo.path, copy)})
    dataset = scan_dataset(tmp_path / "photos")
    for seed in (1, 2):
        stand_in_features(dataset, seed)  # the features of the random weights of `seed`
        config = TrainConfig(epochs=1, batch_size=16, weights="none", seed=seed)
        split = train(dataset, config).metadata.split
        for pair in pairs:
            assert pair <= set(split.train) or pair <= set(split.val)
            assert any(pair <= set(group) for group in split.groups)
        # The groups cost the stratification little: about a fifth of each class held out.
        assert 0.1 <= len(split.val) / len(dataset.records) <= 0.3


def test_a_run_trains_on_the_photos_as_decided_and_records_it(tmp_path, fresh_home) -> None:
    from flower_model.data.dataset import scan_dataset
    from flower_model.data.decisions import decide, decided
    from flower_model.data.synthetic import write_photos

    write_photos(tmp_path / "photos", 40, seed=12, size=(96, 72), kind="striped")
    folder = scan_dataset(tmp_path / "photos")
    stand_in_features(folder)
    gone, moved = folder.records[0], folder.records[1]
    decide(folder, gone.path, "exclude")
    decide(folder, moved.path, "relabel", "tulip")
    info = train(decided(folder), TrainConfig(epochs=1, batch_size=16, weights="none"))
    recorded = info.metadata.dataset
    assert recorded.excluded == (gone.path,) and recorded.relabelled == {moved.path: "tulip"}
    assert gone.path not in info.metadata.split.train + info.metadata.split.val
    # The counts the run trained with: one photo fewer in the excluded one's class, one more
    # in tulip, one fewer in the relabelled photo's folder.
    before = folder.counts()
    expected = dict(before)
    expected[folder.class_names[gone.label]] -= 1
    expected[folder.class_names[moved.label]] -= 1
    expected["tulip"] += 1
    assert recorded.classes == expected and recorded.images == len(folder.records) - 1
    if moved.path in info.metadata.split.val:
        row = info.metadata.evaluation.paths.index(moved.path)
        assert info.metadata.evaluation.labels[row] == folder.class_names.index("tulip")


@pytest.mark.resnet
def test_a_warm_run_builds_no_resnet_and_saves_the_head_alone(
    sample, warm_home, resnet, monkeypatch
) -> None:
    import flower_model.model.backbone as backbone
    from flower_model.data.images import load_rgb
    from flower_model.inference.predict import Classifier
    from flower_model.model.head import networks_of

    config = TrainConfig(epochs=2, batch_size=8, weights="none", patience=0, precision="float32")
    first = train(sample, config)
    monkeypatch.setattr(
        backbone, "build_resnet50", lambda *a, **k: pytest.fail("ResNet50 was built")
    )
    second = train(sample, config)
    assert second.metadata.history == first.metadata.history
    assert second.metadata.head_only and second.metadata.features.computed == 0
    assert second.model_path.stat().st_size < 3_000_000  # the head: 0.56 M weights
    monkeypatch.undo()
    with built_once(resnet):
        networks = networks_of(runs.load_model(second))
    # Loaded, the head is under the very ResNet50 it was trained on: the held-out photos'
    # probabilities are the ones the run measured from the cached features (which the cache
    # keeps in float16: hence 1e-3; other weights would give other probabilities altogether).
    classifier = Classifier(networks, second.class_names, second)
    val = second.metadata.evaluation
    photos = np.stack([load_rgb(sample.root / p, size=224) for p in val.paths[:8]])
    np.testing.assert_allclose(
        classifier.probabilities(photos), np.array(val.probabilities[:8]), atol=1e-3
    )


def test_after_a_warm_up_a_training_of_that_shape_traces_nothing() -> None:
    from flower_model.model import feature_fit
    from flower_model.model.fitting import warm_up

    feature_fit.forget_traced_loops()
    warm_up(classes=3)
    (loop,) = feature_fit._LOOPS.values()
    traced = loop.steps.experimental_get_tracing_count()
    rng = np.random.default_rng(1)
    features = rng.normal(size=(50, 2048)).astype(np.float32)
    labels = np.arange(50) % 3
    config = TrainConfig(epochs=2, batch_size=16, weights="none", patience=0)
    fit_head(build_head(3, seed=5), (features, labels), (features[:10], labels[:10]), config)
    assert loop.steps.experimental_get_tracing_count() == traced
