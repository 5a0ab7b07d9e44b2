"""Using a trained run: class probabilities of photos, and Grad-CAM heatmaps."""
