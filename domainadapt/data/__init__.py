"""Named image domains: in memory (digits, offline by default) and file-backed (benchmark folders, image lists and
WebDataset shards, decoded per item), their splits, on-disk forms and image pipelines.

Builders of the named domains are imported on first use, so importing this package stays cheap (torchvision and
PIL are imported only when an image is first decoded or a pipeline built).
"""

from .benchmarks import BENCHMARKS, benchmark_names, load_benchmark
from .domain import DigitDomain, DomainError
from .image_files import ImageFileDomain
from .image_lists import read_image_folder, read_image_list
from .registry import (
    available_domains,
    check_compatible,
    describe_domains,
    is_lazy_name,
    load_domain,
    load_file_parts,
    load_splits,
    register_domain,
)
from .shards import load_shards, write_shards
from .splits import stratified_split
from .transforms import TRANSFORMS, build_transform

__all__ = [
    "BENCHMARKS",
    "DigitDomain",
    "DomainError",
    "ImageFileDomain",
    "TRANSFORMS",
    "available_domains",
    "benchmark_names",
    "build_transform",
    "check_compatible",
    "describe_domains",
    "is_lazy_name",
    "load_benchmark",
    "load_domain",
    "load_file_parts",
    "load_shards",
    "load_splits",
    "read_image_folder",
    "read_image_list",
    "register_domain",
    "stratified_split",
    "write_shards",
]
