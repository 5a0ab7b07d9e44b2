"""The stories that use every layer below: train a run, evaluate a saved run."""
