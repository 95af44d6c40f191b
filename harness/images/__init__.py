"""Stand-in base images: the only fakes the image tests use (see base_images.py)."""
