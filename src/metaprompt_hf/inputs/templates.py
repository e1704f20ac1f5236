"""Hand-crafted templates of the frozen text branch h_c, per dataset (docs/method.md §8, from the reference code).

None of the reference templates ends with a period. A dataset is recognised by its name, a Hub id or a folder path
(see `_SPELLINGS`); any name containing "imagenet" gets the 8-template ensemble, as in the reference. Unknown
datasets get "a photo of a {}" and a logged warning that names them.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a photo of a {}"

IMAGENET_TEMPLATES: tuple[str, ...] = (
    "itap of a {}",
    "a bad photo of the {}",
    "a origami {}",
    "a photo of the large {}",
    "a {} in a video game",
    "art of the {}",
    "a photo of the small {}",
    "a photo of a {}",
)

TEMPLATE_PRESETS: dict[str, tuple[str, ...]] = {
    "caltech101": (DEFAULT_TEMPLATE,),
    "stanford_cars": (DEFAULT_TEMPLATE,),
    "sun397": (DEFAULT_TEMPLATE,),
    "oxford_flowers": ("a photo of a {}, a type of flower",),
    "food101": ("a photo of a {}, a type of food",),
    "fgvc_aircraft": ("a photo of a {}, a type of aircraft",),
    "oxford_pets": ("a photo of a {}, a type of pet",),
    "eurosat": ("a centered satellite photo of {}",),
    "dtd": ("{} texture",),
    "ucf101": ("a photo of a person doing {}",),
    "pacs": (DEFAULT_TEMPLATE,),
    "vlcs": (DEFAULT_TEMPLATE,),
    "office_home": (DEFAULT_TEMPLATE,),
    "domainnet": (DEFAULT_TEMPLATE,),
    "terra_incognita": (DEFAULT_TEMPLATE,),
    "imagenet": IMAGENET_TEMPLATES,
}

# Compact spellings (lower case, letters and digits only) under which the datasets of the two protocols circulate:
# the reference's dataset names, the last component of common Hub ids, and their usual folder names.
_SPELLINGS: dict[str, tuple[str, ...]] = {
    "caltech101": ("caltech101", "caltech", "101objectcategories"),
    "stanford_cars": ("stanfordcars", "cars", "cars196", "stanfordcarsdataset"),
    "sun397": ("sun397",),
    "oxford_flowers": ("oxfordflowers", "oxfordflowers102", "flowers102", "flowers", "102flowers", "oxford102flowers"),
    "food101": ("food101", "food"),
    "fgvc_aircraft": ("fgvcaircraft", "fgvcaircraft2013b", "aircraft"),
    "oxford_pets": ("oxfordpets", "oxfordiiitpet", "oxfordiiitpets", "oxfordpet", "pets", "oxfordiiitpetdataset"),
    "eurosat": ("eurosat", "eurosatrgb", "eurosat2750"),
    "dtd": ("dtd", "describabletextures", "describabletexturesdataset", "describabletexturesdatasetdtd"),
    "ucf101": ("ucf101", "ucf101midframes", "ucf101frames"),
    "pacs": ("pacs", "pacsfs"),
    "vlcs": ("vlcs", "vlcsfs"),
    "office_home": ("officehome", "officehomefs", "officehomedataset", "officehomedataset10072016"),
    "domainnet": ("domainnet", "domainnetfs"),
    "terra_incognita": ("terraincognita", "terraincognitafs"),
}
_ALIASES: dict[str, str] = {spelling: key for key, spellings in _SPELLINGS.items() for spelling in spellings}


def dataset_key(name: str | None) -> str | None:
    """The preset key of a dataset name, Hub id or folder path, or None if none is recognised. The last two path
    components are tried, the last first, so `tanganke/dtd` and `/data/eurosat/2750` both resolve."""
    if not name:
        return None
    parts = [p for p in re.split(r"[/\\]+", name.strip()) if p]
    for part in reversed(parts[-2:]):
        compact = re.sub(r"[^a-z0-9]", "", part.lower())
        if "imagenet" in compact:
            return "imagenet"
        if compact in _ALIASES:
            return _ALIASES[compact]
    return None


def templates_for_dataset(name: str | None) -> list[str]:
    """Template list for a dataset name, Hub id or folder (case-insensitive; see `dataset_key`). A name that is
    not recognised gets `[DEFAULT_TEMPLATE]` and a logged warning naming it."""
    key = dataset_key(name)
    if key is None:
        if name:
            logger.warning(
                "no template preset for dataset %r: the frozen branch uses the default %r (pass --template to set one)",
                name,
                DEFAULT_TEMPLATE,
            )
        return [DEFAULT_TEMPLATE]
    return list(TEMPLATE_PRESETS[key])
