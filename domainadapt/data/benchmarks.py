"""The public image DA benchmarks as named, file-backed domains: 'office31:amazon', 'domainnet:real', ...

Each family has canonical domain names, class names (in the label order of its standard image lists) and image
counts, checked on load so an incomplete download fails by name. Facts are those of TLlib
(thuml/Transfer-Learning-Library, tllib/vision/datasets/{office31,officehome,visda2017,domainnet}.py):

  office31    Saenko et al., ECCV 2010. 31 classes; amazon 2,817, dslr 498, webcam 795 images.
  officehome  Venkateswara et al., CVPR 2017. 65 classes; Art 2,427, Clipart 4,365, Product 4,439, Real_World 4,357.
  visda2017   Peng et al., arXiv:1710.06924. 12 classes; synthetic = the train set (152,397 renderings),
              real = the validation set (55,388 photos), the standard synthetic -> real task.
  domainnet   Peng et al., ICCV 2019 (cleaned version). 345 classes; the official <domain>_train.txt / _test.txt
              (http://ai.bu.edu/M3SDA/; split sizes below sum to its published cleaned totals, e.g. clipart 48,129).

Layout under the data root (config `data_root`, else $DOMAINADAPT_DATA): ROOT/<family>/ holds TLlib's tree,
e.g. ROOT/office31/amazon/images/<class>/<image> or the list ROOT/office31/image_list/amazon.txt (lines
"amazon/images/<class>/<image> <label>", relative to ROOT/office31). A list is preferred where both exist.
Folders carry the canonical names (the original Office-Home archive's domain folder "Real World" is Real_World here).

Protocol (what `load_splits` makes of a domain): Office-31, Office-Home and VisDA use the whole domain as both the
(unlabelled) target-train set and the target-test set, as the papers do (protocol 'whole'; a seeded held-out split
is an option); DomainNet uses its official train/test lists (protocol 'official').
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .domain import DomainError
from .image_files import ImageFileDomain
from .image_lists import read_image_folder, read_image_list

DATA_ENV = "DOMAINADAPT_DATA"
_TSINGHUA = "https://cloud.tsinghua.edu.cn/f/{}/?dl=1"


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@dataclass(frozen=True)
class BenchmarkDomain:
    """Where one domain's images are: an ImageFolder root and/or list files (per part), and how many to expect.
    Parts: 'all' (the whole domain) or 'train' / 'test' (official lists). A list is (path, folder its paths are
    relative to), both relative to the family root; the first list that exists is used."""

    folder: str | None
    lists: dict[str, tuple[tuple[str, str], ...]]
    counts: dict[str, int]


@dataclass(frozen=True)
class Benchmark:
    name: str
    classes: tuple[str, ...]
    domains: dict[str, BenchmarkDomain]
    protocol: str  # 'whole' or 'official'
    downloads: tuple[tuple[str, str, str], ...] = field(default=())  # (folder it creates, archive name, URL)


def _whole(folder: str, list_file: str, count: int, *more: tuple[str, str]) -> BenchmarkDomain:
    return BenchmarkDomain(folder, {"all": ((list_file, "."), *more)}, {"all": count})


def _official(domain: str, train: int, test: int) -> BenchmarkDomain:
    lists = {part: ((f"image_list/{domain}_{part}.txt", "."), (f"{domain}_{part}.txt", "."))
             for part in ("train", "test")}
    return BenchmarkDomain(None, lists, {"train": train, "test": test})


OFFICE31 = Benchmark(
    "office31",
    _names(
        "back_pack bike bike_helmet bookcase bottle calculator desk_chair desk_lamp desktop_computer file_cabinet "
        "headphones keyboard laptop_computer letter_tray mobile_phone monitor mouse mug paper_notebook pen phone "
        "printer projector punchers ring_binder ruler scissors speaker stapler tape_dispenser trash_can "
    ),
    {d: _whole(f"{d}/images", f"image_list/{d}.txt", n) for d, n in (("amazon", 2817), ("dslr", 498), ("webcam", 795))},
    "whole",
    (("image_list", "image_list.zip", _TSINGHUA.format("2c1dd9fbcaa9455aa4ad")),
     ("amazon", "amazon.tgz", _TSINGHUA.format("ec12dfcddade43ab8101")),
     ("dslr", "dslr.tgz", _TSINGHUA.format("a41d818ae2f34da7bb32")),
     ("webcam", "webcam.tgz", _TSINGHUA.format("8a41009a166e4131adcd"))),
)

OFFICEHOME = Benchmark(
    "officehome",
    _names(
        "Drill Exit_Sign Bottle Glasses Computer File_Cabinet Shelf Toys Sink Laptop Kettle Folder Keyboard "
        "Flipflops Pencil Bed Hammer ToothBrush Couch Bike Postit_Notes Mug Webcam Desk_Lamp Telephone Helmet "
        "Mouse Pen Monitor Mop Sneakers Notebook Backpack Alarm_Clock Push_Pin Paper_Clip Batteries Radio Fan "
        "Ruler Pan Screwdriver Trash_Can Printer Speaker Eraser Bucket Chair Calendar Calculator Flowers "
        "Lamp_Shade Spoon Candles Clipboards Scissors TV Curtains Fork Soda Table Knives Oven Refrigerator Marker "
    ),
    {d: _whole(d, f"image_list/{d}.txt", n)
     for d, n in (("Art", 2427), ("Clipart", 4365), ("Product", 4439), ("Real_World", 4357))},
    "whole",
    (("image_list", "image_list.zip", _TSINGHUA.format("1b0171a188944313b1f5")),
     ("Art", "Art.tgz", _TSINGHUA.format("6a006656b9a14567ade2")),
     ("Clipart", "Clipart.tgz", _TSINGHUA.format("ae88aa31d2d7411dad79")),
     ("Product", "Product.tgz", _TSINGHUA.format("f219b0ff35e142b3ab48")),
     ("Real_World", "Real_World.tgz", _TSINGHUA.format("6c19f3f15bb24ed3951a"))),
)

VISDA2017 = Benchmark(
    "visda2017",
    _names(
        "aeroplane bicycle bus car horse knife motorcycle person plant skateboard train truck "
    ),
    {"synthetic": _whole("train", "image_list/train.txt", 152397, ("train/image_list.txt", "train")),
     "real": _whole("validation", "image_list/validation.txt", 55388, ("validation/image_list.txt", "validation"))},
    "whole",
    (("image_list", "image_list.zip", _TSINGHUA.format("c107de37b8094c5398dc")),
     ("train", "train.tgz", _TSINGHUA.format("c5f3ce59139144ec8221")),
     ("validation", "validation.tgz", _TSINGHUA.format("da70e4b1cf514ecea562"))),
)

DOMAINNET = Benchmark(
    "domainnet",
    _names(
        "aircraft_carrier airplane alarm_clock ambulance angel animal_migration ant anvil apple arm asparagus axe "
        "backpack banana bandage barn baseball baseball_bat basket basketball bat bathtub beach bear beard bed "
        "bee belt bench bicycle binoculars bird birthday_cake blackberry blueberry book boomerang bottlecap "
        "bowtie bracelet brain bread bridge broccoli broom bucket bulldozer bus bush butterfly cactus cake "
        "calculator calendar camel camera camouflage campfire candle cannon canoe car carrot castle cat "
        "ceiling_fan cello cell_phone chair chandelier church circle clarinet clock cloud coffee_cup compass "
        "computer cookie cooler couch cow crab crayon crocodile crown cruise_ship cup diamond dishwasher "
        "diving_board dog dolphin donut door dragon dresser drill drums duck dumbbell ear elbow elephant envelope "
        "eraser eye eyeglasses face fan feather fence finger fire_hydrant fireplace firetruck fish flamingo "
        "flashlight flip_flops floor_lamp flower flying_saucer foot fork frog frying_pan garden garden_hose "
        "giraffe goatee golf_club grapes grass guitar hamburger hammer hand harp hat headphones hedgehog "
        "helicopter helmet hexagon hockey_puck hockey_stick horse hospital hot_air_balloon hot_dog hot_tub "
        "hourglass house house_plant hurricane ice_cream jacket jail kangaroo key keyboard knee knife ladder "
        "lantern laptop leaf leg light_bulb lighter lighthouse lightning line lion lipstick lobster lollipop "
        "mailbox map marker matches megaphone mermaid microphone microwave monkey moon mosquito motorbike "
        "mountain mouse moustache mouth mug mushroom nail necklace nose ocean octagon octopus onion oven owl "
        "paintbrush paint_can palm_tree panda pants paper_clip parachute parrot passport peanut pear peas pencil "
        "penguin piano pickup_truck picture_frame pig pillow pineapple pizza pliers police_car pond pool popsicle "
        "postcard potato power_outlet purse rabbit raccoon radio rain rainbow rake remote_control rhinoceros "
        "rifle river roller_coaster rollerskates sailboat sandwich saw saxophone school_bus scissors scorpion "
        "screwdriver sea_turtle see_saw shark sheep shoe shorts shovel sink skateboard skull skyscraper "
        "sleeping_bag smiley_face snail snake snorkel snowflake snowman soccer_ball sock speedboat spider spoon "
        "spreadsheet square squiggle squirrel stairs star steak stereo stethoscope stitches stop_sign stove "
        "strawberry streetlight string_bean submarine suitcase sun swan sweater swing_set sword syringe table "
        "teapot teddy-bear telephone television tennis_racquet tent The_Eiffel_Tower The_Great_Wall_of_China "
        "The_Mona_Lisa tiger toaster toe toilet tooth toothbrush toothpaste tornado tractor traffic_light train "
        "tree triangle trombone truck trumpet t-shirt umbrella underwear van vase violin washing_machine "
        "watermelon waterslide whale wheel windmill wine_bottle wine_glass wristwatch yoga zebra zigzag "
    ),
    {"clipart": _official("clipart", 33525, 14604), "infograph": _official("infograph", 36023, 15582),
     "painting": _official("painting", 50416, 21850), "quickdraw": _official("quickdraw", 120750, 51750),
     "real": _official("real", 120906, 52041), "sketch": _official("sketch", 48212, 20916)},
    "official",
    (("image_list", "image_list.zip", _TSINGHUA.format("bf0fe327e4b046eb89ba")),
     ("clipart", "clipart.tgz", _TSINGHUA.format("f0515164a4864220b98b")),
     ("infograph", "infograph.tgz", _TSINGHUA.format("98b19d5fc9884109a9cb")),
     ("painting", "painting.tgz", _TSINGHUA.format("11285ce9fbd34bb7b28c")),
     ("quickdraw", "quickdraw.tgz", _TSINGHUA.format("6faa9efb498b494abf66")),
     ("real", "real.tgz", _TSINGHUA.format("17a101842c564959b525")),
     ("sketch", "sketch.tgz", _TSINGHUA.format("b305add26e9d47349495"))),
)

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (OFFICE31, OFFICEHOME, VISDA2017, DOMAINNET)}


def benchmark_names() -> list[str]:
    """Every 'family:domain' name, sorted."""
    return sorted(f"{b}:{d}" for b, bench in BENCHMARKS.items() for d in bench.domains)


def describe_benchmarks() -> dict[str, str]:
    out = {}
    for name in benchmark_names():
        bench, domain = _parse(name)
        counts = ", ".join(f"{part} {n:,}" for part, n in bench.domains[domain].counts.items())
        out[name] = (f"{bench.name} {domain}: {len(bench.classes)} classes, {counts} images; file-backed, under "
                     f"data_root or ${DATA_ENV} ({bench.protocol} protocol)")
    return out


def is_benchmark_name(name: str) -> bool:
    family, _, domain = name.partition(":")
    return family in BENCHMARKS and domain in BENCHMARKS[family].domains


def is_benchmark_family(name: str) -> bool:
    return name.partition(":")[0] in BENCHMARKS


def protocol_of(name: str) -> str:
    return _parse(name)[0].protocol


def _parse(name: str) -> tuple[Benchmark, str]:
    family, _, domain = name.partition(":")
    bench = BENCHMARKS.get(family)
    if bench is None:
        raise DomainError(f"unknown benchmark {family!r}; choose one of {', '.join(BENCHMARKS)}")
    if domain not in bench.domains:
        raise DomainError(f"{family} has no domain {domain!r}; its domains: {', '.join(bench.domains)}")
    return bench, domain


def data_root(root: str | os.PathLike | None) -> Path | None:
    """`root`, else $DOMAINADAPT_DATA, else None."""
    value = root if root is not None else os.environ.get(DATA_ENV) or None
    return Path(value).expanduser() if value is not None else None


def _layout(bench: Benchmark, domain: str, root: str) -> str:
    spec = bench.domains[domain]
    base = f"{root}/{bench.name}"
    lists = " and ".join(f"{base}/{files[0][0]}" for files in spec.lists.values())
    if spec.folder is None:
        return f"expected {lists} with {base}/{domain}/<class>/<image>"
    return f"expected {base}/{spec.folder}/<class>/<image> (or {lists})"


def _missing(bench: Benchmark, domain: str, root: Path | None) -> DomainError:
    where = f"under {root}" if root is not None else f"(no data_root given and ${DATA_ENV} is not set)"
    folder = (bench.domains[domain].folder or domain).split("/")[0]
    urls = " and ".join(url for top, _, url in bench.downloads if top in (folder, "image_list")) or "the dataset's site"
    return DomainError(f"{bench.name} not found {where}: {_layout(bench, domain, str(root or 'ROOT'))}; download from "
                       f"{urls} (TLlib's mirrors; or download=True) or put the files there by hand")


def download_benchmark(bench: Benchmark, family_root: Path) -> None:
    """Fetch and extract the archives whose folder is missing (TLlib's mirror). No checksums are published for
    these archives, so none is checked here; the image counts checked on load are the integrity check."""
    try:
        from torchvision.datasets.utils import download_and_extract_archive
    except ImportError as exc:  # pragma: no cover - torchvision is a dependency
        raise DomainError(f"download=True needs torchvision: {exc}") from None
    family_root.mkdir(parents=True, exist_ok=True)
    for folder, archive, url in bench.downloads:
        if (family_root / folder).exists():
            continue
        try:
            download_and_extract_archive(url, download_root=str(family_root), filename=archive)
        except Exception as exc:  # noqa: BLE001 - network, HTTP, disk and archive errors all mean the same here
            raise DomainError(f"downloading {bench.name} {archive} from {url} failed ({type(exc).__name__}: {exc}); "
                              f"download it by hand and extract it into {family_root}") from None


def _read_part(bench: Benchmark, domain: str, part: str, family_root: Path) -> tuple[list[str], list[int]] | None:
    spec = bench.domains[domain]
    for list_file, base in spec.lists.get(part, ()):
        if (family_root / list_file).is_file():
            paths, labels, _ = read_image_list(family_root / list_file, root=family_root / base, classes=bench.classes)
            return paths, labels
    if part == "all" and spec.folder is not None and (family_root / spec.folder).is_dir():
        paths, labels, _ = read_image_folder(family_root / spec.folder, classes=bench.classes)
        return paths, labels
    return None


def load_benchmark(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    image_size: int = 224,
    transform: str = "resize",
    check_counts: bool = True,
    download: bool = False,
) -> dict[str, ImageFileDomain]:
    """The parts of benchmark domain `name`: {'all': domain} ('whole' families) or {'train', 'test'} (DomainNet's
    official lists), each lazily decoded. Counts are checked unless check_counts=False (tests on tiny trees)."""
    bench, domain = _parse(name)
    base = data_root(root)
    if base is None:
        raise _missing(bench, domain, None)
    family_root = base / bench.name
    if download:
        download_benchmark(bench, family_root)
    parts_wanted = list(bench.domains[domain].counts)
    parts: dict[str, ImageFileDomain] = {}
    for part in parts_wanted:
        found = _read_part(bench, domain, part, family_root)
        if found is None:
            raise _missing(bench, domain, base)
        paths, labels = found
        expected = bench.domains[domain].counts[part]
        label = name if part == "all" else f"{name} {part} list"
        if check_counts and len(paths) != expected:
            raise DomainError(f"{label} has {len(paths)} images, expected {expected} (incomplete download?); "
                              "check_counts=False uses it anyway")
        part_name = name if part == "all" else f"{name}/{part}"
        parts[part] = ImageFileDomain(part_name, paths, torch.tensor(labels, dtype=torch.int64), bench.classes,
                                      transform=transform, image_size=image_size,
                                      protocol="whole" if part == "all" else "official")
    return parts
