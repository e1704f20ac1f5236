from __future__ import annotations

import logging

import pytest

from metaprompt_hf.inputs.templates import (
    DEFAULT_TEMPLATE,
    IMAGENET_TEMPLATES,
    TEMPLATE_PRESETS,
    templates_for_dataset,
)

ALIASES = {
    "caltech101": ["Caltech101", "caltech-101", "flwrlabs/caltech101", "/data/caltech-101/101_ObjectCategories"],
    "oxford_pets": ["OxfordPets", "oxford-iiit-pet", "timm/oxford-iiit-pet", "pcuenq/oxford-pets", "oxford_pets"],
    "stanford_cars": ["StanfordCars", "stanford_cars", "tanganke/stanford_cars", "Multimodal-Fatima/StanfordCars"],
    "oxford_flowers": ["OxfordFlowers", "oxford_flowers102", "nelorth/oxford-flowers", "flowers102", "Flowers-102"],
    "food101": ["Food101", "food101", "ethz/food101", "food-101"],
    "fgvc_aircraft": ["FGVCAircraft", "fgvc-aircraft-2013b", "HuggingFaceM4/FGVC-Aircraft"],
    "sun397": ["SUN397", "tanganke/sun397", "1aurent/SUN397"],
    "dtd": ["DescribableTextures", "dtd", "tanganke/dtd", "jxie/dtd", "cansa/Describable-Textures-Dataset-DTD"],
    "eurosat": ["EuroSAT", "blanchon/EuroSAT_RGB", "timm/eurosat-rgb", "tanganke/eurosat", "/data/eurosat/2750"],
    "ucf101": ["UCF101", "ucf101", "UCF-101-midframes", "/data/ucf101/UCF-101-midframes"],
    "pacs": ["PACS", "PACSFS", "flwrlabs/pacs", "/data/pacs/"],
    "vlcs": ["VLCS", "VLCSFS", "flwrlabs/vlcs"],
    "office_home": ["OfficeHome", "office_home", "office-home", "flwrlabs/office-home", "OfficeHomeDataset_10072016"],
    "domainnet": ["DomainNet", "domain_net", "wltjr1007/DomainNet"],
}


@pytest.mark.parametrize("key", sorted(ALIASES))
def test_common_names_hub_ids_and_folders_get_the_dataset_template(key, caplog):
    for name in ALIASES[key]:
        with caplog.at_level(logging.WARNING, logger="metaprompt_hf.inputs.templates"):
            assert templates_for_dataset(name) == list(TEMPLATE_PRESETS[key]), name
        assert not caplog.records, f"{name}: recognised, so no warning"


def test_imagenet_variants_get_the_ensemble():
    for name in ("imagenet", "ImageNet", "timm/imagenet-1k-wds", "ILSVRC/imagenet-1k", "imagenet-sketch"):
        assert templates_for_dataset(name) == list(IMAGENET_TEMPLATES)


def test_unknown_names_fall_back_with_a_warning_naming_them(caplog):
    with caplog.at_level(logging.WARNING, logger="metaprompt_hf.inputs.templates"):
        assert templates_for_dataset("someone/my-own-data") == [DEFAULT_TEMPLATE]
    assert len(caplog.records) == 1 and "someone/my-own-data" in caplog.records[0].getMessage()
    assert "--template" in caplog.records[0].getMessage()


def test_parent_folders_beyond_the_last_two_components_are_not_read():
    # a dataset name high up in a path says nothing about the data below it
    assert templates_for_dataset("/data/food101/experiments/run1") == [DEFAULT_TEMPLATE]
