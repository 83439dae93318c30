"""newsrnn: reproducible recurrent text classifiers on AG News."""

__version__ = "0.1.0"
