"""ResNet50 features of photos: the pipeline, the extractor, the on-disk cache, the map."""
