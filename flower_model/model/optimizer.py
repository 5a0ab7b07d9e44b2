"""The optimizer name that runs saved before the head's loop went to public APIs refer to.

Until then the fine-tuning fit (`fitting.fit_model`) compiled its model with `FusedAdam`, a
`keras.optimizers.Adam` whose update was TensorFlow's fused Adam kernel, reached through
TensorFlow's raw operations and Adam's private slot lists. `model.save` writes the compile
configuration into a run's `model.keras`, so those runs' files name the registered class
`flower_lens>FusedAdam`. The app loads runs with `compile=False`, which never reads it, but
a person may load one with Keras' default `compile=True` (having imported this module, as
before): the class stays registered, as Keras' own Adam under the old name, so that such
files still load, optimizer state included (the same variables, in the same order).

Nothing trains with it any more: both fits use `keras.optimizers.Adam`.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="flower_lens")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` under the name old saved runs give it (see the module's note):
    the same arithmetic, configuration and state, and no code of its own."""
