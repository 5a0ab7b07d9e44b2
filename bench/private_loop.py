"""A copy of the head's training loop as it was before it went to public APIs only
(flower_model/model/feature_fit.py, optimizer.py and fitting.py's `fit_head` at commit
3e6d10d), kept here only to compare its speed with the library's loop in the training
benchmark. It is not the library and nothing else uses it: the library's ban on private
APIs (`tensorflow.python`, `tf.raw_ops`, Keras' underscored attributes) does not apply here.

The old loop wrote its backward pass with `tf.raw_ops.BiasAddGrad`, `ReluGrad` and
`SparseSoftmaxCrossEntropyWithLogits`, applied Adam with the fused `ResourceApplyAdam`
kernel on the optimizer's private slot variables, and called its traced function without
Grappler through `tensorflow.python.eager.context`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import keras
import numpy as np

from flower_model.core.events import OnEvent
from flower_model.model.config import TrainConfig
from flower_model.model.fitting import Features, Fit

if TYPE_CHECKING:
    import tensorflow as tf

# A chunk of steps takes about this long, so that Stop is never waited for much longer.
CHUNK_SECONDS = 0.1
# The first chunk's steps, before a chunk's time is known (a process's first call of the
# loop also prepares its graph).
FIRST_CHUNK_STEPS = 8


@dataclass(frozen=True)
class Rows:
    """Features and their labels, as the loop reads them."""

    features: np.ndarray  # (n, d) float32
    labels: np.ndarray  # (n,) integer classes

    def __len__(self) -> int:
        return len(self.labels)


def epoch_orders(rows: int, epochs: int, seed: int | None) -> list[np.ndarray]:
    """Return each epoch's row order: a fresh seeded shuffle per epoch, or without a seed
    the rows in order."""
    if seed is None:
        return [np.arange(rows)] * epochs
    generator = np.random.default_rng(seed)
    return [generator.permutation(rows) for _ in range(epochs)]


@dataclass(frozen=True)
class Stack:
    """The shape of a model the loop can train: Dense layers (each with a bias, no
    regulariser or constraint), each hidden one with ReLU or no activation and optionally a
    Dropout after it, the last with softmax. The loop traced for a stack serves any model of
    that shape, whatever its number of classes."""

    inputs: int  # the features' width
    widths: tuple[int, ...]  # each hidden Dense's units
    activations: tuple[str, ...]  # each hidden Dense's: "relu" or "linear"
    rates: tuple[float, ...]  # the Dropout rate after each hidden Dense (0.0: none)


def stack_of(model: keras.Model) -> tuple[Stack, list[keras.layers.Dense], int]:
    """Return a model's stack, its Dense layers in order, and its dropout seed (the first
    Dropout's); raise ValueError when the model is not such a stack."""
    import keras

    dense: list[keras.layers.Dense] = []
    rates: list[float] = []
    seeds: list[int] = []
    previous = model.inputs[0]
    for layer in model.layers[1:]:
        if layer.input is not previous:
            raise ValueError(f"{model.name} is not a plain stack of layers at {layer.name}")
        previous = layer.output
        if type(layer) is keras.layers.Dropout and dense and layer.noise_shape is None:
            if rates[-1]:
                raise ValueError(f"{layer.name}: two Dropout layers in a row")
            rates[-1] = float(layer.rate)
            seeds.append(0 if layer.seed is None else int(layer.seed))
        elif type(layer) is keras.layers.Dense and _plain_dense(layer):
            dense.append(layer)
            rates.append(0.0)
        else:
            raise ValueError(f"{layer.name}: the loop trains Dense and Dropout layers only")
    names = [keras.activations.serialize(layer.activation) for layer in dense]
    if not dense or names[-1] != "softmax" or rates[-1]:
        raise ValueError(f"{model.name} does not end in a softmax Dense layer")
    if any(name not in ("relu", "linear") for name in names[:-1]):
        raise ValueError(f"{model.name}: hidden Dense layers must be ReLU or linear")
    widths = tuple(int(layer.units) for layer in dense[:-1])
    stack = Stack(int(model.inputs[0].shape[-1]), widths, tuple(names[:-1]), tuple(rates[:-1]))
    return stack, dense, seeds[0] if seeds else 0


def _plain_dense(layer: keras.layers.Dense) -> bool:
    extras = (
        layer.kernel_regularizer,
        layer.bias_regularizer,
        layer.activity_regularizer,
        layer.kernel_constraint,
        layer.bias_constraint,
    )
    return layer.use_bias and all(extra is None for extra in extras) and not layer.lora_enabled


def dropout_masks(
    rates: tuple[float, ...], widths: tuple[int, ...], rows: tf.Tensor, seed: tf.Tensor
) -> list[tf.Tensor | None]:
    """Return one step's dropout masks, one per hidden layer (None without dropout): each
    unit kept with probability 1 - rate and then scaled by 1 / (1 - rate), as Keras' Dropout
    does, all drawn in one call from `seed` (the stream's seed and the step)."""
    import tensorflow as tf

    kept = [(rate, width) for rate, width in zip(rates, widths, strict=True) if rate]
    if not kept:
        return [None] * len(rates)
    columns = sum(width for _, width in kept)
    uniform = tf.random.stateless_uniform(tf.stack([rows, columns]), seed=seed)
    # One comparison for all layers: each column against its own layer's rate.
    column_rates = np.concatenate([np.full(width, rate) for rate, width in kept])
    keep = uniform >= column_rates.astype(np.float32)
    scaled = tf.where(keep, (1.0 / (1.0 - column_rates)).astype(np.float32), 0.0)
    masks: list[tf.Tensor | None] = []
    start = 0
    for rate, width in zip(rates, widths, strict=True):
        if not rate:
            masks.append(None)
            continue
        masks.append(scaled[:, start : start + width])
        start += width
    return masks


class _Loop:
    """The compiled training chunk and evaluation of one stack, for any model of its shape:
    the weights, the optimizer's state and the data are arguments, so a later model of the
    same shape (the next training in a server, the audit's next fold) is not traced again."""

    def __init__(self, stack: Stack) -> None:
        import tensorflow as tf

        def forward(features: tf.Tensor, weights: list, masks: list) -> tuple:
            """Return the stack's logits (the loss is computed from them, as Keras computes
            it, so the softmax itself is never needed), each Dense layer's input and each
            hidden layer's activation, which the backward pass reads."""
            inputs, activations = [], []
            out = features
            for j, activation in enumerate(stack.activations):
                inputs.append(out)
                out = tf.nn.bias_add(tf.matmul(out, weights[2 * j]), weights[2 * j + 1])
                out = tf.nn.relu(out) if activation == "relu" else out
                activations.append(out)
                out = out if masks[j] is None else out * masks[j]
            inputs.append(out)
            return tf.nn.bias_add(tf.matmul(out, weights[-2]), weights[-1]), inputs, activations

        def backward(
            delta: tf.Tensor, weights: list, masks: list, inputs: list, activations: list
        ) -> list:
            """Return the loss's gradients for the weights, from its gradient for the
            logits: the products and sums TensorFlow's own gradients of these operations
            compute, without a gradient for the features."""
            gradients: list = [None] * len(weights)
            for j in reversed(range(len(inputs))):
                gradients[2 * j] = tf.matmul(inputs[j], delta, transpose_a=True)
                gradients[2 * j + 1] = tf.raw_ops.BiasAddGrad(out_backprop=delta)
                if j == 0:
                    break
                delta = tf.matmul(delta, weights[2 * j], transpose_b=True)
                delta = delta if masks[j - 1] is None else delta * masks[j - 1]
                if stack.activations[j - 1] == "relu":
                    delta = tf.raw_ops.ReluGrad(gradients=delta, features=activations[j - 1])
            return gradients

        def hits(labels: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
            guessed = tf.argmax(scores, axis=-1, output_type=tf.int64)
            return tf.reduce_sum(tf.cast(tf.equal(guessed, labels), tf.float32))

        @tf.function(autograph=False)
        def steps(
            data: tuple, span: tuple, weights: list, state: tuple, adam: tuple, held_out: tuple
        ) -> tuple:
            """Run the steps `first` to `last` of an epoch, then score the held-out rows
            (none but at an epoch's end) without dropout; return the steps' summed loss
            (each step's mean times its rows) and correct guesses, and the held-out rows'."""
            x, y, order, batch, seed = data
            first, last = span
            momentums, velocities, iterations = state
            rate, beta_1, beta_2, epsilon = adam
            n = tf.shape(order)[0]

            at_start = iterations.read_value()
            dropped = [j for j, dropout in enumerate(stack.rates) if dropout]

            def batch_of(i: tf.Tensor) -> tuple:
                """Return step i's rows, labels and dropout masks (none past the end): they
                depend on nothing the steps change, so the next step's are drawn while this
                one computes, filling the gaps its operations leave on the two cores."""
                start = tf.minimum(i * batch, n)
                count = tf.minimum(batch, n - start)
                rows = tf.slice(order, tf.reshape(start, [1]), tf.reshape(count, [1]))
                step_seed = tf.stack([seed, at_start + tf.cast(i - first, tf.int64)])
                masks = dropout_masks(stack.rates, stack.widths, count, step_seed)
                return (tf.gather(x, rows), tf.gather(y, rows), *(masks[j] for j in dropped))

            def step(i: tf.Tensor, loss_sum: tf.Tensor, correct: tf.Tensor, *drawn) -> tuple:
                features, labels, *kept = drawn
                masks: list = [None] * len(stack.rates)
                for j, mask in zip(dropped, kept, strict=True):
                    masks[j] = mask
                scores, inputs, activations = forward(features, weights, masks)
                per_row, backprop = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
                    features=scores, labels=labels
                )
                rows_count = tf.cast(tf.shape(labels)[0], tf.float32)
                gradients = backward(backprop / rows_count, weights, masks, inputs, activations)
                t = tf.cast(iterations.assign_add(1), tf.float32)
                powers = (tf.pow(beta_1, t), tf.pow(beta_2, t))
                for weight, m, v, g in zip(weights, momentums, velocities, gradients, strict=True):
                    apply_adam(weight, m, v, g, powers, rate, beta_1, beta_2, epsilon)
                loss_sum += tf.reduce_sum(per_row)
                return (i + 1, loss_sum, correct + hits(labels, scores), *batch_of(i + 1))

            zero = tf.constant(0.0)
            scalar = tf.TensorShape([])
            shapes = (scalar, scalar, scalar, tf.TensorShape([None, stack.inputs]))
            shapes += (tf.TensorShape([None]),)  # the last batch of an epoch may be smaller
            shapes += tuple(tf.TensorShape([None, stack.widths[j]]) for j in dropped)
            _, loss_sum, correct, *_ = tf.while_loop(
                lambda i, *_: i < last,
                step,
                (first, zero, zero, *batch_of(first)),
                shape_invariants=shapes,
            )
            # Read after the loop's updates: the weights are the same variables.
            held_x, held_y = held_out
            scores = forward(held_x, weights, [None] * len(stack.rates))[0]
            held_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(held_y, scores)
            return loss_sum, correct, tf.reduce_sum(held_loss), hits(held_y, scores)

        self.stack, self.steps = stack, steps
        self.run: Callable[..., tuple] | None = None

    def trace(self, variables: list, state: tuple) -> None:
        """Trace the steps for any number of rows, once: later calls, with data of any
        size and another model's weights, call the traced function directly (a call
        through `tf.function`'s dispatch costs 0.8 ms, the traced function's 0.35 ms)."""
        import tensorflow as tf

        if self.run is not None:
            return

        def spec(shape: list, dtype: tf.DType) -> tf.TensorSpec:
            return tf.TensorSpec(shape, dtype)

        rows, labels = spec([None, self.stack.inputs], tf.float32), spec([None], tf.int64)
        scalar = spec([], tf.int32)
        data = (rows, labels, spec([None], tf.int32), scalar, spec([], tf.int64))
        adam = (spec([], tf.float32),) * 4
        self.run = self.steps.get_concrete_function(
            data, (scalar, scalar), variables, state, adam, (rows, labels)
        )


@contextlib.contextmanager
def _without_grappler() -> Iterator[None]:
    """Call this thread's functions without Grappler's graph rewrites.

    The loop is written op by op already: Grappler's passes found nothing to gain in it
    (measured: the same step time), but cost about 0.15 s at a loop's first call. The
    options are TensorFlow's per-thread function call options, so nothing else in the
    process changes; a function's first call under them is the one its kernels keep.
    """
    from tensorflow.python.eager import context

    current = context.context()
    previous = current.function_call_options
    config = current.config
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    current.function_call_options = context.FunctionCallOptions(previous.executor_type, config)
    try:
        yield
    finally:
        current.function_call_options = previous


_LOOPS: dict[Stack, _Loop] = {}
_LOOPS_LOCK = threading.Lock()


def forget_traced_loops() -> None:
    """Forget the traced loops, so that the next fit traces its own (for measuring it)."""
    with _LOOPS_LOCK:
        _LOOPS.clear()


def _loop_for(stack: Stack) -> _Loop:
    with _LOOPS_LOCK:
        if stack not in _LOOPS:
            _LOOPS[stack] = _Loop(stack)
        return _LOOPS[stack]


def _run(loop: _Loop, data: tuple, span: tuple[int, int], *rest: object) -> tuple:
    import tensorflow as tf

    assert loop.run is not None
    with _without_grappler():
        return loop.run(data, (tf.constant(span[0]), tf.constant(span[1])), *rest)


def fit_features(
    model: keras.Model,
    optimizer: PrivateFusedAdam,
    train: Rows,
    val: Rows | None,
    epochs: int,
    batch_size: int,
    callbacks: list[keras.callbacks.Callback],
    shuffle_seed: int | None,
) -> dict[str, list[float]]:
    """Train a model on in-memory features with sparse categorical cross-entropy; return
    Keras' history of the epochs run (loss, accuracy and, with validation, val_loss and
    val_accuracy), the last one possibly cut short by a callback.

    The model is a `Stack`. Step by step, the arithmetic is that of `model.compile(optimizer,
    "sparse_categorical_crossentropy", ["accuracy"])` then `model.fit` on the same batches,
    except for the dropout masks, which are drawn per step from the first Dropout's seed.
    """
    import keras
    import tensorflow as tf

    stack, dense, seed = stack_of(model)
    if train.features.shape[1] != stack.inputs:
        raise ValueError(
            f"{model.name} takes {stack.inputs} features, not {train.features.shape[1]}"
        )
    if not optimizer.plain():
        raise ValueError("the loop applies Adam alone: no schedule, clipping or weight decay")
    loop = _loop_for(stack)
    weights = [v for layer in dense for v in (layer.kernel, layer.bias)]
    optimizer.build(weights)
    slots = [optimizer._get_variable_index(w) for w in weights]
    state = (
        [optimizer._momentums[i].value for i in slots],
        [optimizer._velocities[i].value for i in slots],
        optimizer.iterations.value,
    )
    adam = tuple(
        tf.constant(float(value), tf.float32)
        for value in (
            optimizer.learning_rate,
            optimizer.beta_1,
            optimizer.beta_2,
            optimizer.epsilon,
        )
    )
    variables = [w.value for w in weights]
    loop.trace(variables, state)
    x, y = tf.constant(train.features), tf.constant(train.labels.astype(np.int64))
    batch, seed_tensor = tf.constant(batch_size), tf.constant(seed, tf.int64)
    steps = math.ceil(len(train) / batch_size)
    none = (tf.zeros([0, train.features.shape[1]]), tf.zeros([0], tf.int64))
    held_out = (
        none if val is None else (tf.constant(val.features), tf.constant(val.labels, tf.int64))
    )
    callback_list = keras.callbacks.CallbackList(callbacks, model=model)
    history: dict[str, list[float]] = {}
    model.stop_training = False
    chunk, timed = FIRST_CHUNK_STEPS, False
    callback_list.on_train_begin()
    for epoch, order in enumerate(epoch_orders(len(train), epochs, shuffle_seed)):
        callback_list.on_epoch_begin(epoch)
        data = (x, y, tf.constant(order.astype(np.int32)), batch, seed_tensor)
        loss_sum = correct = 0.0
        done = 0
        scored: tuple | None = None  # the held-out rows' loss and hits, at the epoch's end
        while done < steps and not model.stop_training:
            last = min(done + chunk, steps)
            started = time.perf_counter()
            outputs = _run(
                loop,
                data,
                (done, last),
                variables,
                state,
                adam,
                held_out if last == steps else none,
            )
            loss_sum, correct = loss_sum + float(outputs[0]), correct + float(outputs[1])
            seconds = time.perf_counter() - started
            if timed:  # the first call may trace: its time says nothing of a step's
                chunk = max(1, round(CHUNK_SECONDS / (seconds / (last - done))))
            timed = True
            done = last
            seen = min(done * batch_size, len(train))
            logs = {"loss": loss_sum / seen, "accuracy": correct / seen}
            callback_list.on_train_batch_end(done - 1, logs)
            scored = outputs[2:] if last == steps else None
        if val is not None:
            if scored is None:  # stopped within the epoch: score the rows now
                scored = _run(loop, data, (done, done), variables, state, adam, held_out)[2:]
            logs["val_loss"] = float(scored[0]) / len(val)
            logs["val_accuracy"] = float(scored[1]) / len(val)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history


def apply_adam(
    variable: tf.Variable,
    momentum: tf.Variable,
    velocity: tf.Variable,
    gradient: tf.Tensor,
    powers: tuple[tf.Tensor, tf.Tensor],
    learning_rate: tf.Tensor,
    beta_1: tf.Tensor,
    beta_2: tf.Tensor,
    epsilon: tf.Tensor,
) -> None:
    """Apply Adam's update to a weight, in one kernel, given β₁ᵗ and β₂ᵗ (a loop over many
    weights computes them once per step)."""
    import tensorflow as tf

    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle,
        m=momentum.handle,
        v=velocity.handle,
        beta1_power=powers[0],
        beta2_power=powers[1],
        lr=learning_rate,
        beta1=beta_1,
        beta2=beta_2,
        epsilon=epsilon,
        grad=gradient,
    )


class PrivateFusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam whose state the old loop updated itself, with the fused kernel
    (the library's FusedAdam also did so under Keras' `fit`, which nothing here calls)."""

    def plain(self) -> bool:
        """Return whether the update is Adam's alone: no schedule, clipping, weight decay,
        moving average or gradient accumulation (what a loop of its own can apply)."""
        extras = (
            self.clipnorm,
            self.clipvalue,
            self.global_clipnorm,
            self.weight_decay,
            self.gradient_accumulation_steps,
        )
        schedule = isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule)
        return all(extra is None for extra in extras) and not self.use_ema and not schedule


def fit_head(
    head: keras.Model,
    train: Features,
    val: Features | None,
    config: TrainConfig,
    on_event: OnEvent | None = None,
) -> Fit:
    """`flower_model.model.fitting.fit_head` as it was, through the old loop above."""
    from flower_model.model.fitting import fit_with_callbacks
    from flower_model.model.fold import fold_standardisation
    from flower_model.model.head import FIRST_DENSE
    from flower_model.model.scaling import standardisation

    train32 = np.array(train[0], dtype=np.float32)
    mean, std = standardisation(train32)
    shift, scale = mean.astype(np.float32), (1.0 / std).astype(np.float32)

    def standardised(rows: np.ndarray, labels: np.ndarray) -> Rows:
        rows -= shift
        rows *= scale
        return Rows(rows, labels)

    train_rows = standardised(train32, train[1])
    val_rows = standardised(np.array(val[0], np.float32), val[1]) if val is not None else None

    def fit(callbacks: list[keras.callbacks.Callback]) -> dict[str, list[float]]:
        return fit_features(
            head,
            PrivateFusedAdam(config.learning_rate),
            train_rows,
            val_rows,
            config.epochs,
            config.batch_size,
            callbacks,
            shuffle_seed=config.seed,
        )

    steps = math.ceil(len(train[0]) / config.batch_size)
    result = fit_with_callbacks(fit, steps, val is not None, config, on_event, None)
    fold_standardisation(head.get_layer(FIRST_DENSE), mean, std)
    return replace(result, standardised=True)
