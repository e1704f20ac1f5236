"""Hand-crafted templates of the frozen text branch h_c, per dataset (METHOD.md §8, from the reference code).

None of the reference templates ends with a period. Unknown datasets get "a photo of a {}".
"""

from __future__ import annotations

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

_ALIASES = {
    "oxfordflowers": "oxford_flowers",
    "flowers102": "oxford_flowers",
    "oxfordpets": "oxford_pets",
    "stanfordcars": "stanford_cars",
    "fgvcaircraft": "fgvc_aircraft",
    "describabletextures": "dtd",
    "officehome": "office_home",
}


def templates_for_dataset(name: str | None) -> list[str]:
    """Template list for a dataset name or Hub id (case-insensitive; any name containing "imagenet" gets the
    8-template ensemble, as in the reference). Unknown names get `[DEFAULT_TEMPLATE]`."""
    if not name:
        return [DEFAULT_TEMPLATE]
    key = name.rstrip("/").split("/")[-1].lower().replace("-", "_")
    if "imagenet" in key:
        return list(IMAGENET_TEMPLATES)
    key = key.removesuffix("fs")  # PACSFS, VLCSFS, ... are the few-shot DG variants
    key = _ALIASES.get(key.replace("_", ""), key)
    return list(TEMPLATE_PRESETS.get(key, (DEFAULT_TEMPLATE,)))
