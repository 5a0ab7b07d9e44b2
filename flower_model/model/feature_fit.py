"""Fit a small model on features held in memory: many training steps per TensorFlow call.

Keras' `fit` pays a fixed cost per step (the tf.data iterator, the metric objects, the
Python between calls) that dwarfs the head's 6 ms of arithmetic per 64-photo step on a
2-core CPU. Here the features sit in memory as tensors, and a compiled `tf.while_loop` runs
a chunk of steps per call: each step gathers its batch, runs the Dense layers with dropout,
and applies Adam, with Keras' arithmetic. Between chunks, the run's Keras callbacks see the
same calls as under `fit` (`on_train_batch_end` once per chunk, with its last step), so
progress, the best weights, early stopping and Stop work unchanged, and Stop takes effect
at the end of the current chunk.

The loop uses public APIs only. It is written for the stack of layers rather than through
the layers' own calls: the weights, Adam's state and the data are arguments of one traced
function per shape of stack (the weights and the state are the TensorFlow variables that
hold the model's and the optimizer's Keras variables, their `value`, updated in place), so
the process traces it once, not once per training, and nothing is copied between chunks.
A `tf.GradientTape` that watches the weights alone gives the gradients (TensorFlow's own
gradient kernels, none for the features). Adam is Keras' own operations, but for the first
layer's 0.5 M weights, whose update XLA compiles into one pass (see XLA_WEIGHT_SIZE).
Dropout draws every layer's mask of a step in one call: Keras' Dropout layers spent a fifth
of a step on their seeds. The held-out rows are scored in the epoch's last call.

What the private-API loop this replaced had, and no public API gives: TensorFlow's fused
Adam kernel (two threads, where XLA's loop runs on one), and calls without Grappler, whose
rewrites cost 0.1-0.2 s at a loop's first call. So it is slower, by this much (the whole
`fit_head`, 20 epochs of 3,200 + 800 features at batch 64, on the 2-core Xeon with AMX while
other tests ran on it, the two loops timed in turn in one process, `python -m
bench.training`, medians of 5): the first fit of a process's loop 5.63 s (5.35-6.01)
against 4.51 s (4.28-4.78), 1.22 times, and in a second run 5.04 s against 4.12 s, 1.24
times; a later fit, its loop traced, 4.81 s (4.56-4.98) against 4.51 s (4.07-4.70), 1.09
times, then 3.84 s against 3.47 s, 1.22 times; a fresh process's only fit (XLA's start
included) 1.26 times (median of 6 pairs). With Keras' Adam alone, no XLA: 1.5-1.85 times.
In the benchmark's quick run (160 features) a first fit took 0.97 s, a later one 0.30 s,
against 0.48 s and 0.27 s: the tape's tracing, Grappler and XLA's compiling add about 0.45 s
to a loop's first call.

Measured before, on the same machine when quieter: Keras' `fit` 4.9 s, with
`steps_per_execution` 4.0 s, with XLA 10 s; through the layers' own calls 2.3 s; the
private-API loop about 1.85 s when it traced, 1.75 s after. The machine's own speed varies
by 5-10 % from one minute to the next, more while other work runs on it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# A chunk of steps takes about this long, so that Stop is never waited for much longer.
CHUNK_SECONDS = 0.1
# The first chunk's steps, before a chunk's time is known (a process's first call of the
# loop also prepares its graph).
FIRST_CHUNK_STEPS = 8


@dataclass(frozen=True)
class Rows:
    """Features and their labels, as the loop reads them."""

    features: np.ndarray | tf.Tensor  # (n, d) float32
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
        elif type(layer) is keras.layers.Dense:
            if not _plain_dense(layer):
                raise ValueError(
                    f"{layer.name}: the loop trains a float32 kernel and bias, both trainable, "
                    "without regulariser, constraint, LoRA or quantisation"
                )
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
    """Return whether a Dense layer is a float32 kernel and bias, both trained, and nothing
    else: no regulariser or constraint, and no LoRA or quantised kernel (those hold more
    weights, or weights of another type)."""
    extras = (
        layer.kernel_regularizer,
        layer.bias_regularizer,
        layer.activity_regularizer,
        layer.kernel_constraint,
        layer.bias_constraint,
    )
    weights = layer.weights
    return (
        layer.use_bias
        and all(extra is None for extra in extras)
        and len(weights) == 2
        and len(layer.trainable_weights) == 2
        and all(weight.dtype == "float32" for weight in weights)
        and layer.compute_dtype == "float32"
    )


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


def _plain_adam(optimizer: keras.optimizers.Optimizer) -> bool:
    """Return whether an optimizer's update is Keras' Adam alone (what the loop applies): no
    schedule, clipping, weight decay, AMSGrad, moving average, loss scaling or gradient
    accumulation, and no update step of a subclass's own."""
    import keras

    if not isinstance(optimizer, keras.optimizers.Adam):
        return False
    extras = (
        optimizer.clipnorm,
        optimizer.clipvalue,
        optimizer.global_clipnorm,
        optimizer.weight_decay,
        optimizer.gradient_accumulation_steps,
        optimizer.loss_scale_factor,
    )
    return (
        all(extra is None for extra in extras)
        and not optimizer.use_ema
        and not optimizer.amsgrad
        # A constant rate is a variable; a schedule's or a callable's is computed per step.
        and isinstance(optimizer.learning_rate, keras.Variable)
        and type(optimizer).update_step is keras.optimizers.Adam.update_step
    )


def _adam_state(
    optimizer: keras.optimizers.Adam, weights: list[keras.Variable]
) -> tuple[list[keras.Variable], list[keras.Variable]]:
    """Return Adam's momentum and velocity of each weight, the optimizer built for them.

    They are read from `optimizer.variables`, whose layout is the one Keras saves an
    optimizer's state in (and keeps, so that saved files load): the step count, the learning
    rate, then each weight's momentum and velocity, in the weights' order. Raise ValueError
    if the optimizer holds anything else (built for other weights, say).
    """
    optimizer.build(weights)
    variables = optimizer.variables
    slots = variables[2:]
    other = ValueError(f"{optimizer.name} holds the state of other weights than these")
    if variables[0] is not optimizer.iterations or len(slots) != 2 * len(weights):
        raise other
    momentums, velocities = slots[0::2], slots[1::2]
    for weight, momentum, velocity in zip(weights, momentums, velocities, strict=True):
        named = momentum.name.endswith("_momentum") and velocity.name.endswith("_velocity")
        if not named or not tuple(momentum.shape) == tuple(weight.shape) == tuple(velocity.shape):
            raise other
    return momentums, velocities


def _apply_adam(
    weights: list[tf.Variable],
    gradients: list[tf.Tensor],
    momentums: list[tf.Variable],
    velocities: list[tf.Variable],
    alpha: tf.Tensor,
    constants: tuple[tf.Tensor, tf.Tensor, tf.Tensor],
) -> None:
    """Apply Adam's update to weights in place, with the operations of Keras' own
    (`keras.optimizers.Adam.update_step`, without AMSGrad), given the step's
    alpha = learning rate · √(1 - β₂ᵗ) / (1 - β₁ᵗ) and the constants (1 - β₁, 1 - β₂, ε)."""
    import tensorflow as tf

    one_minus_beta_1, one_minus_beta_2, epsilon = constants
    for weight, gradient, m, v in zip(weights, gradients, momentums, velocities, strict=True):
        m.assign_add((gradient - m) * one_minus_beta_1)
        v.assign_add((tf.square(gradient) - v) * one_minus_beta_2)
        weight.assign_sub((m * alpha) / (tf.sqrt(v) + epsilon))


# Weights of at least this many numbers get their Adam update compiled by XLA into one pass.
# Keras' Adam is about ten operations per weight, each a pass over it: for the first layer's
# 0.5 M numbers, 1.1-2.5 ms a step where TensorFlow's fused kernel (private) took 0.3-0.7 ms
# and XLA's loop 0.6-0.9 ms (each alone in a loop of steps, minimum to median, on the loaded
# 2-core Xeon; on one core XLA's equals the fused kernel). XLA's loop rounds each
# multiply-add once (a fused multiply-add) where Keras' kernels round twice: a step leaves
# 11 % of the momenta 1 unit in the last place apart from Keras'. The smaller weights stay
# with Keras' operations: XLA compiles for about 0.1 s per weight at a loop's first call
# (all eight of the head's: 0.45-1 s), and gained nothing measurable on them.
XLA_WEIGHT_SIZE = 100_000

_TRACINGS = 0  # how many times this process traced a loop


def tracings() -> int:
    """Return how many times this process has traced a training loop, of any shape: a fit
    that finds its shape's loop traced adds none."""
    return _TRACINGS


class _Loop:
    """The compiled training chunk and evaluation of one stack, for any model of its shape:
    the weights, the optimizer's state and the data are arguments, so a later model of the
    same shape (the next training in a server, the audit's next fold) is not traced again."""

    def __init__(self, stack: Stack) -> None:
        import tensorflow as tf

        # The hidden layers' kernels' and biases' sizes, in the weights' order; the output
        # layer's, last, depend on the number of classes: never fused.
        widths = (stack.inputs, *stack.widths)
        sizes = [size for a, b in pairwise(widths) for size in (a * b, b)]
        fused = [k for k, size in enumerate(sizes) if size >= XLA_WEIGHT_SIZE]
        separate = [k for k in range(len(sizes) + 2) if k not in fused]
        apply_fused = tf.function(_apply_adam, jit_compile=True, autograph=False)

        def update(weights: list, gradients: list, state: tuple, alpha, constants) -> None:
            momentums, velocities = state
            for indices, apply in ((fused, apply_fused), (separate, _apply_adam)):
                if indices:
                    apply(
                        [weights[k] for k in indices],
                        [gradients[k] for k in indices],
                        [momentums[k] for k in indices],
                        [velocities[k] for k in indices],
                        alpha,
                        constants,
                    )

        def logits_of(features: tf.Tensor, weights: list, masks: list) -> tf.Tensor:
            """Return the stack's logits (the loss is computed from them, as Keras computes
            it, so the softmax itself is never needed)."""
            out = features
            for j, activation in enumerate(stack.activations):
                out = tf.nn.bias_add(tf.matmul(out, weights[2 * j]), weights[2 * j + 1])
                out = tf.nn.relu(out) if activation == "relu" else out
                out = out if masks[j] is None else out * masks[j]
            return tf.nn.bias_add(tf.matmul(out, weights[-2]), weights[-1])

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
            global _TRACINGS
            _TRACINGS += 1
            x, y, order, batch, seed = data
            first, last = span
            momentums, velocities, iterations = state
            rate, beta_1, beta_2, constants = adam[0], adam[1], adam[2], adam[3:]
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
                values = [weight.read_value() for weight in weights]
                # The tape watches the weights alone: no gradient for the features.
                with tf.GradientTape() as tape:
                    tape.watch(values)
                    scores = logits_of(features, values, masks)
                    per_row = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, scores)
                    loss = tf.reduce_sum(per_row) / tf.cast(tf.shape(labels)[0], tf.float32)
                gradients = tape.gradient(loss, values)
                t = tf.cast(iterations.assign_add(1), tf.float32)
                alpha = rate * tf.sqrt(1 - tf.pow(beta_2, t)) / (1 - tf.pow(beta_1, t))
                update(weights, gradients, (momentums, velocities), alpha, constants)
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
            values = [weight.read_value() for weight in weights]
            scores = logits_of(held_x, values, [None] * len(stack.rates))
            held_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(held_y, scores)
            return loss_sum, correct, tf.reduce_sum(held_loss), hits(held_y, scores)

        self.stack, self.steps = stack, steps
        self.run: Callable[..., tuple] | None = None
        self.lock = threading.Lock()

    def trace(self) -> None:
        """Trace the steps for any number of rows and of classes, once: later calls, with
        data of any size and another model's weights, call the traced function directly (a
        call through `tf.function`'s dispatch cost 0.8 ms, the traced function's 0.35 ms)."""
        import tensorflow as tf

        with self.lock:
            if self.run is not None:
                return

            def spec(shape: list, dtype: tf.DType) -> tf.TensorSpec:
                return tf.TensorSpec(shape, dtype)

            def weights() -> list[tf.Variable]:
                """Stand-ins for a model's weights, their number of classes unknown (traced
                with a model's own, the loop would compute with its number of classes)."""
                widths = (self.stack.inputs, *self.stack.widths, None)
                shapes = [shape for a, b in pairwise(widths) for shape in ([a, b], [b])]
                return [
                    tf.Variable(tf.zeros([d or 0 for d in shape]), shape=tf.TensorShape(shape))
                    for shape in shapes
                ]

            rows, labels = spec([None, self.stack.inputs], tf.float32), spec([None], tf.int64)
            scalar = spec([], tf.int32)
            data = (rows, labels, spec([None], tf.int32), scalar, spec([], tf.int64))
            state = (weights(), weights(), tf.Variable(tf.constant(0, tf.int64)))
            adam = (spec([], tf.float32),) * 6
            self.run = self.steps.get_concrete_function(
                data, (scalar, scalar), weights(), state, adam, (rows, labels)
            )


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


def _variable_of(weight: keras.Variable) -> tf.Variable:
    """Return the TensorFlow variable that holds a Keras variable's value (its `value`, on
    TensorFlow), which the loop updates in place."""
    import tensorflow as tf

    value = weight.value
    if not isinstance(value, tf.Variable):
        raise ValueError(f"{weight.path} is not held in a TensorFlow variable")
    return value


def fit_features(
    model: keras.Model,
    optimizer: keras.optimizers.Adam,
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

    The model is a `Stack`, the optimizer a plain `keras.optimizers.Adam`, whose state (its
    step count, each weight's momentum and velocity) the fit advances as Keras' would. Step
    by step, the arithmetic is that of `model.compile(optimizer,
    "sparse_categorical_crossentropy", ["accuracy"])` then `model.fit` on the same batches,
    except for the dropout masks, which are drawn per step from the first Dropout's seed, and
    the rounding of the large weights' update, which XLA fuses (see XLA_WEIGHT_SIZE).
    """
    import keras
    import tensorflow as tf

    stack, dense, seed = stack_of(model)
    if train.features.shape[1] != stack.inputs:
        raise ValueError(
            f"{model.name} takes {stack.inputs} features, not {train.features.shape[1]}"
        )
    if not _plain_adam(optimizer):
        raise ValueError("the loop applies Adam alone: no schedule, clipping or weight decay")
    loop = _loop_for(stack)
    weights = [v for layer in dense for v in (layer.kernel, layer.bias)]
    momentums, velocities = _adam_state(optimizer, weights)
    state = (
        [_variable_of(m) for m in momentums],
        [_variable_of(v) for v in velocities],
        _variable_of(optimizer.iterations),
    )
    beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
    # 1 - β is computed here, in double precision, as Keras computes it.
    adam = tuple(
        tf.constant(value, tf.float32)
        for value in (
            float(optimizer.learning_rate),
            beta_1,
            beta_2,
            1.0 - beta_1,
            1.0 - beta_2,
            float(optimizer.epsilon),
        )
    )
    variables = [_variable_of(w) for w in weights]
    loop.trace()
    assert loop.run is not None
    # A tensor given is used as it is (fit_head's): no second copy of the rows.
    x = tf.convert_to_tensor(train.features, tf.float32)
    y = tf.constant(train.labels.astype(np.int64))
    batch, seed_tensor = tf.constant(batch_size), tf.constant(seed, tf.int64)
    steps = math.ceil(len(train) / batch_size)
    none = (tf.zeros([0, train.features.shape[1]]), tf.zeros([0], tf.int64))
    held_out = (
        none
        if val is None
        else (tf.convert_to_tensor(val.features, tf.float32), tf.constant(val.labels, tf.int64))
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
            outputs = loop.run(
                data,
                (tf.constant(done), tf.constant(last)),
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
                span = (tf.constant(done), tf.constant(done))
                scored = loop.run(data, span, variables, state, adam, held_out)[2:]
            logs["val_loss"] = float(scored[0]) / len(val)
            logs["val_accuracy"] = float(scored[1]) / len(val)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return history
