"""Flower Lens: transfer learning on flower photos with a frozen ResNet50.

The package is UI-free. Modules that need TensorFlow import it themselves, so
`flower_model.data.dataset`, `flower_model.data.images` and `flower_model.runs.store` stay light
enough for pages that must not load TensorFlow.
"""

__version__ = "0.1.0"
