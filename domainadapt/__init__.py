"""domainadapt: transfer learning and domain adaptation for PyTorch.

The package is import-light on purpose: subpackages (data, models, methods, train, divergence, ...)
are imported where they are used, so `import domainadapt` costs nothing.
"""

__version__ = "0.1.0"
