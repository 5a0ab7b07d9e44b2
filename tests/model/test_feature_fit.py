"""The head's fit on in-memory features: Keras' arithmetic, chunks of compiled steps."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from flower_model.model import feature_fit
from flower_model.model.feature_fit import Rows, epoch_orders, fit_features
from flower_model.model.head import build_head

KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def separable(count: int, seed: int = 0) -> Rows:
    """Return standardised-looking features whose class shows in its own 400 columns."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 5
    features = rng.normal(0.0, 1.0, (count, 2048)).astype(np.float32)
    features[:, :2000] += np.repeat(np.eye(5, dtype=np.float32)[labels], 400, axis=1)
    return Rows(features, labels)


def dense_stack(dropout: float = 0.0, activations: tuple[str, ...] = ("relu",) * 3) -> keras.Model:
    """Return the head's Dense layers, seeded, with or without Dropout after each hidden one."""
    features = keras.Input(shape=(2048,))
    out = features
    for i, (units, activation) in enumerate(zip((256, 128, 64), activations, strict=True)):
        init = keras.initializers.GlorotUniform(seed=i)
        out = keras.layers.Dense(units, activation=activation, kernel_initializer=init)(out)
        if dropout:
            out = keras.layers.Dropout(dropout, seed=7 + i)(out)
    init = keras.initializers.GlorotUniform(seed=3)
    return keras.Model(features, keras.layers.Dense(5, "softmax", kernel_initializer=init)(out))


def keras_fit(
    train: Rows, val: Rows, epochs: int, batch: int, activations: tuple[str, ...]
) -> tuple[keras.Model, dict]:
    """Return a fresh stack fitted by Keras' own compile and fit, on unshuffled batches."""
    import tensorflow as tf

    model = dense_stack(activations=activations)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )

    def batches(rows: Rows) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices((rows.features, rows.labels)).batch(batch)

    history = model.fit(
        batches(train), epochs=epochs, validation_data=batches(val), shuffle=False, verbose=0
    ).history
    return model, history


@pytest.mark.parametrize("activations", [("relu",) * 3, ("relu", "linear", "relu")])
def test_the_fit_is_keras_fit_step_by_step(activations: tuple[str, ...]) -> None:
    # Without dropout (whose masks the loop draws its own way), every number is Keras', to
    # the rounding of XLA's multiply-adds (below). 70 rows at batch 16: the last batch of
    # every epoch is partial, as in a real split. A linear hidden layer checks the other
    # branch of the forward pass.
    train, val = separable(70), separable(30, seed=1)
    reference, expected = keras_fit(train, val, epochs=3, batch=16, activations=activations)
    model = dense_stack(activations=activations)
    optimizer = keras.optimizers.Adam(1e-3)
    history = fit_features(model, optimizer, train, val, 3, 16, [], shuffle_seed=None)
    for key in KEYS:
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, atol=1e-6)
    for got, want in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Adam's state too: the step count, the rate, each weight's momentum and velocity. XLA
    # fuses the first layer's update, rounding a multiply-add once where Keras' kernels round
    # twice: the last bits of its state differ, and by what that changes in their gradients,
    # the other layers'. An element near 0 may then differ by 1e-4 of itself, not of the rest.
    assert int(optimizer.iterations) == int(reference.optimizer.iterations) == 3 * 5
    for got, want in zip(optimizer.variables, reference.optimizer.variables, strict=True):
        assert got.name.rsplit("_", 1)[-1] == want.name.rsplit("_", 1)[-1]  # momentum, ...
        scale = float(np.max(np.abs(want.numpy())))
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5 * scale)
    assert history["val_accuracy"][-1] > 0.6  # it learned, so the comparison means something


def test_dropout_masks_keep_and_scale_as_keras_dropout_does() -> None:
    import tensorflow as tf

    rates, widths = (0.2, 0.0, 0.5), (256, 128, 64)
    masks = feature_fit.dropout_masks(rates, widths, tf.constant(4000), tf.constant([7, 0]))
    assert masks[1] is None  # no Dropout after that layer
    for mask, rate, width in ((masks[0], 0.2, 256), (masks[2], 0.5, 64)):
        values = np.asarray(mask)
        assert values.shape == (4000, width)
        assert set(np.unique(values)) == {0.0, np.float32(1.0 / (1.0 - rate))}
        assert np.mean(values == 0.0) == pytest.approx(rate, abs=0.01)
    again = feature_fit.dropout_masks(rates, widths, tf.constant(4000), tf.constant([7, 0]))
    step = feature_fit.dropout_masks(rates, widths, tf.constant(4000), tf.constant([7, 1]))
    np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(masks[0]))
    assert np.mean(np.asarray(step[0]) != np.asarray(masks[0])) > 0.2  # a new step, new masks


def test_with_dropout_the_same_seed_gives_the_same_weights_and_another_does_not() -> None:
    train, val = separable(100), separable(20, seed=1)

    def fitted(seed: int) -> list[np.ndarray]:
        head = build_head(5, seed=seed)
        fit_features(head, keras.optimizers.Adam(1e-3), train, val, 2, 16, [], shuffle_seed=1)
        return head.get_weights()

    first, again = fitted(42), fitted(42)
    for got, want in zip(again, first, strict=True):
        np.testing.assert_array_equal(got, want)
    # Another seed: another start and other masks.
    assert not np.allclose(fitted(43)[-2], first[-2])


def test_a_later_model_of_the_same_shape_is_not_traced_again() -> None:
    train, val = separable(64), separable(16, seed=1)
    fit_features(build_head(5), keras.optimizers.Adam(1e-3), train, val, 1, 16, [], shuffle_seed=1)
    traced = feature_fit.tracings()
    other = build_head(5, seed=3)  # new weights, another optimizer, other rows
    optimizer = keras.optimizers.Adam(3e-4)
    fit_features(other, optimizer, separable(48, 2), None, 2, 8, [], shuffle_seed=2)
    assert feature_fit.tracings() == traced


def test_heads_of_other_classes_share_a_loop_and_learn_as_in_their_own() -> None:
    def three_classes() -> list[np.ndarray]:
        rows = separable(60)
        three = Rows(rows.features, rows.labels % 3)
        model = build_head(3)
        fit_features(model, keras.optimizers.Adam(1e-3), three, None, 2, 16, [], shuffle_seed=1)
        return model.get_weights()

    feature_fit.forget_traced_loops()
    alone = three_classes()
    feature_fit.forget_traced_loops()
    five = build_head(5)
    fit_features(five, keras.optimizers.Adam(1e-3), separable(40), None, 1, 16, [], shuffle_seed=1)
    traced = feature_fit.tracings()
    after_five = three_classes()
    assert feature_fit.tracings() == traced  # the five classes' loop served three
    for got, want in zip(after_five, alone, strict=True):
        np.testing.assert_array_equal(got, want)
    # Other hidden widths or another input width: another shape, another loop.
    inputs = keras.Input((2048,))
    hidden = inputs
    for units in (32, 16, 8):  # the head's activations and dropout, other widths
        hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(units, "relu")(hidden))
    narrow = keras.Model(inputs, keras.layers.Dense(5, "softmax")(hidden))
    shape, head_shape = feature_fit.stack_of(narrow)[0], feature_fit.stack_of(five)[0]
    assert (shape.activations, shape.rates) == (head_shape.activations, head_shape.rates)
    assert shape != head_shape
    fit_features(narrow, keras.optimizers.Adam(1e-3), separable(40), None, 1, 16, [], None)
    assert feature_fit.tracings() == traced + 1
    with pytest.raises(ValueError, match="takes 2048 features, not 100"):
        fit_features(
            build_head(5),
            keras.optimizers.Adam(1e-3),
            Rows(np.ones((8, 100), np.float32), np.zeros(8, int)),
            None,
            1,
            4,
            [],
            None,
        )


def test_only_a_stack_of_dense_and_dropout_layers_is_trained() -> None:
    features = keras.Input(shape=(2048,))
    normalised = keras.layers.BatchNormalization()(features)
    with_norm = keras.Model(features, keras.layers.Dense(5, "softmax")(normalised))
    no_softmax = keras.Model(features, keras.layers.Dense(5)(features))
    with_lora = build_head(5)
    with_lora.layers[1].enable_lora(4)  # more weights than a kernel and a bias
    frozen = build_head(5)
    frozen.layers[1].trainable = False  # Keras' fit would not train it
    for model in (with_norm, no_softmax):
        with pytest.raises(ValueError):
            fit_features(model, keras.optimizers.Adam(1e-3), separable(20), None, 1, 8, [], None)
    for model in (with_lora, frozen):
        with pytest.raises(ValueError, match="both trainable, without regulariser"):
            fit_features(model, keras.optimizers.Adam(1e-3), separable(20), None, 1, 8, [], None)
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5)
    for optimizer in (
        keras.optimizers.Adam(1e-3, clipnorm=1.0),
        keras.optimizers.Adam(1e-3, weight_decay=0.01),
        keras.optimizers.Adam(1e-3, amsgrad=True),
        keras.optimizers.Adam(schedule),
        keras.optimizers.AdamW(1e-3),
        keras.optimizers.SGD(1e-3),
    ):
        with pytest.raises(ValueError, match="Adam alone"):
            fit_features(build_head(5), optimizer, separable(20), None, 1, 8, [], None)
    # An optimizer that holds the state of other weights is not mistaken for this model's.
    used = keras.optimizers.Adam(1e-3)
    fit_features(build_head(5), used, separable(20), None, 1, 8, [], None)
    bigger = keras.Input((2048,))
    wide = keras.Model(bigger, keras.layers.Dense(5, "softmax")(keras.layers.Dense(9)(bigger)))
    with pytest.raises(ValueError, match="other weights"):
        fit_features(wide, used, separable(20), None, 1, 8, [], None)


def test_chunk_sizes_do_not_change_the_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    train, val = separable(100), separable(20, seed=1)

    def fitted() -> list[np.ndarray]:
        head = build_head(5)
        fit_features(head, keras.optimizers.Adam(1e-3), train, val, 2, 8, [], shuffle_seed=3)
        return head.get_weights()

    whole = fitted()
    monkeypatch.setattr(feature_fit, "FIRST_CHUNK_STEPS", 1)
    monkeypatch.setattr(feature_fit, "CHUNK_SECONDS", 0.0)  # one step per call
    for got, want in zip(fitted(), whole, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_seeded_orders_reshuffle_every_epoch_and_repeat() -> None:
    orders = epoch_orders(50, 3, seed=5)
    assert all(sorted(order.tolist()) == list(range(50)) for order in orders)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[0], np.arange(50))
    for again, first in zip(epoch_orders(50, 3, seed=5), orders, strict=True):
        np.testing.assert_array_equal(again, first)
    assert all(np.array_equal(order, np.arange(4)) for order in epoch_orders(4, 2, None))


class StopAtFirstReport(keras.callbacks.Callback):
    """Stops the fit the first time a chunk ends, as Stop does, and keeps what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.epochs_ended: list[dict] = []

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.batches.append(batch)
        self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs_ended.append(dict(logs or {}))


def test_a_stop_takes_effect_when_the_current_chunk_ends() -> None:
    train = separable(640)
    optimizer = keras.optimizers.Adam(1e-3)
    stop = StopAtFirstReport()
    history = fit_features(build_head(5), optimizer, train, None, 5, 16, [stop], shuffle_seed=1)
    # 40 steps an epoch; the first chunk is FIRST_CHUNK_STEPS, and nothing ran after it.
    assert int(optimizer.iterations) == feature_fit.FIRST_CHUNK_STEPS
    assert stop.batches == [feature_fit.FIRST_CHUNK_STEPS - 1]
    assert len(history["loss"]) == 1 and len(stop.epochs_ended) == 1
    assert "val_loss" not in history


def test_progress_is_reported_per_chunk_with_running_means() -> None:
    train = separable(200)
    seen: list[tuple[int, dict]] = []
    report = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: seen.append((batch, dict(logs)))
    )
    history = fit_features(
        build_head(5), keras.optimizers.Adam(1e-3), train, None, 1, 10, [report], None
    )
    assert seen[0][0] == feature_fit.FIRST_CHUNK_STEPS - 1 and seen[-1][0] == 19
    assert [b for b, _ in seen] == sorted({b for b, _ in seen})  # each chunk once, in order
    assert seen[-1][1]["loss"] == pytest.approx(history["loss"][0])
    assert seen[-1][1]["accuracy"] == pytest.approx(history["accuracy"][0])
