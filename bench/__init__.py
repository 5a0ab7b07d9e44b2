"""Measurements of Flower Lens' speed and memory on this machine (not tests).

Run with `python -m bench` (or `make bench`); `python -m bench --quick` is a smoke run that
only proves the benchmark still works. Everything happens in a temporary workspace
(`$FLOWER_LENS_HOME` points there), with a seeded random-weights ResNet50: speed does not
depend on the weight values, and no ImageNet file is needed.

The full run takes about 5 minutes on a 2-core CPU with native bfloat16 (more where
extraction runs in float32), most of it ResNet50 extracting features: the float32 comparison
and the growth series (500 + 1,000 + 2,000 + 4,000 photos); `--sizes` shortens it.
"""
