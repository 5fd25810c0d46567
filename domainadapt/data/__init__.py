"""Named image domains (digits offline by default), their splits and on-disk forms.

Builders of the named domains are imported on first use, so importing this package stays cheap.
"""

from .domain import DigitDomain, DomainError
from .registry import (
    available_domains,
    check_compatible,
    describe_domains,
    load_domain,
    load_splits,
    register_domain,
)
from .splits import stratified_split

__all__ = [
    "DigitDomain",
    "DomainError",
    "available_domains",
    "check_compatible",
    "describe_domains",
    "load_domain",
    "load_splits",
    "register_domain",
    "stratified_split",
]
