"""The model: ResNet50, the head, its settings, and how the head is fitted on features."""
