"""Training utilities: targets from labels/dots, augmentation, losses, datasets."""
