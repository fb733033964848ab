"""Applications built on the package: the built-in demo."""
