"""Measurements of Flower Lens' speed and memory on this machine (not tests).

Run with `python -m bench` (or `make bench`); `python -m bench --quick` is a smoke run that
only proves the benchmark still works. Everything happens in a temporary workspace
(`$FLOWER_LENS_HOME` points there), with a seeded random-weights ResNet50: speed does not
depend on the weight values, and no ImageNet file is needed.

The full run takes about 10-15 minutes on a 2-core CPU, most of it ResNet50 extracting
features for the growth series (500 + 1,000 + 2,000 + 4,000 photos at roughly 20-30 images/s);
`--sizes` shortens it.
"""
