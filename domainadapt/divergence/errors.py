"""Exceptions raised by :mod:`domainadapt.divergence`.

All input errors derive from :class:`DivergenceInputError` (a ``ValueError``) so callers can catch
one type; a missing weights file is a ``FileNotFoundError`` whose message names the path and how to
get the file.
"""

from __future__ import annotations


class DivergenceInputError(ValueError):
    """Base class for bad inputs to a divergence measure."""


class FeatureDimensionError(DivergenceInputError):
    """The two feature sets (or a mean and a covariance) disagree in dimension, or are not n×d."""


class TooFewSamplesError(DivergenceInputError):
    """A feature set has fewer rows than the estimator needs (at least 2)."""


class NonFiniteFeaturesError(DivergenceInputError):
    """A feature set contains NaN or ±Inf."""


class SubsetSizeError(DivergenceInputError):
    """KID's subset size exceeds the number of rows of a feature set."""


class WeightsNotFoundError(FileNotFoundError):
    """The FID Inception weights file is missing."""
