"""Where each dataset of the paper kit is downloaded from: the one table `SOURCES` (dataset name → Hub file,
pinned revision, checksum, folder inside the archive, licence and original source), read by `download.py` and the
docs (docs/paper_protocols.md, "Getting the data in one command").

What the table rests on (read on the Hub; nothing here was downloaded to check it):
- The default repository `zhengli97/prompt_learning_dataset` is a **model** repository on the Hub (its page is
  https://huggingface.co/zhengli97/prompt_learning_dataset, no `/datasets/` in the address), licence `mit` in its
  card. Its card lists Caltech101, Oxford Pets, StanfordCars, Flowers102, Food101, FGVC Aircraft, SUN397, DTD,
  EuroSAT, UCF101 (base-to-novel) and ImageNet-V2, -Sketch, -A, -R ("domain generalization" in CoOp's sense:
  ImageNet → its shifted variants), "all the datasets ... (except ImageNet)", each "with the corresponding
  split_zhou_xx.json file", in the CoOp layout.
- Its file listing (https://huggingface.co/zhengli97/prompt_learning_dataset/tree/main, 17 commits, head
  `ceb3112`, full hash not shown) showed `caltech-101.zip`, `dtd.zip`, `eurosat.zip`, `fgvc_aircraft.zip`,
  `food101.zip`, `imagenet-adversarial.zip` and `imagenet-rendition.zip` before the page was cut off: those names
  are `verified=True`. The other seven names are inferred from the same naming (the CoOp folder name + `.zip`)
  and are `verified=False`.
- One commit page was readable in full: commit `d0e6ea3b08022a57fcaebb4d7606c9f401e7a716` ("Upload dtd.zip with
  huggingface_hub") adds `dtd.zip` as the LFS object sha256 `5ba4d300…313b`, 626,071,992 bytes. DTD is therefore
  pinned to that commit with that checksum and size. No other revision or checksum could be read: those entries
  have `revision=None` (downloaded from `main`, and the commit it resolved to is recorded in the extracted
  folder's marker) and `sha256=None` (the archive is then checked against the sha256 the Hub itself reports for
  the LFS file, i.e. the name of the blob in the Hugging Face cache; a download whose content does not match is
  refused before extraction).
- The folder inside each archive could not be read; `inner` is the expected one (the CoOp folder name). The
  installer also accepts an archive that wraps its files in one other folder or none (`download.py`), and the
  reader then checks the layout before the folder is moved into place.
- PACS, VLCS, Office-Home and DomainNet (Dassl's DG datasets) are in no Hub repository whose layout could be read.
  Their entries have no default repository: `--repo_id` names a mirror holding `<folder>.zip` with Dassl's layout.

A mirror with the same file names (`--repo_id`, `--revision`, `--repo_type`) is used as is; its archives are
checked against the Hub's own sha256, since the recorded ones belong to the default repository.
Licences are those the original sources state on their pages, to our knowledge: they were not re-read when this
table was written; check them before use or redistribution.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_REPO_ID = "zhengli97/prompt_learning_dataset"
DEFAULT_REPO_TYPE = "model"


@dataclass(frozen=True)
class DatasetSource:
    """One dataset's archive on the Hub.

    Attributes:
        archive: file name in the repository.
        inner: folder inside the archive expected to hold the layout (another single folder, or none, is accepted).
        verified: whether the file name was read in the repository's listing (else inferred; see the module doc).
        revision: the commit the archive was read at (pinned), or None (unverified: `main`).
        sha256: the archive's sha256 read on the Hub, or None (unverified: the Hub's LFS sha256 is checked).
        size: the archive's size in bytes read on the Hub, or None.
        repo_id: the default repository, or None when the dataset has none (a mirror must be named).
        licence: the licence or terms the original source states.
        source: the original source's page.
    """

    archive: str
    inner: str
    verified: bool
    licence: str
    source: str
    revision: str | None = None
    sha256: str | None = None
    size: int | None = None
    repo_id: str | None = DEFAULT_REPO_ID


_DTD_COMMIT = "d0e6ea3b08022a57fcaebb4d7606c9f401e7a716"
_RESEARCH = "research and non-commercial use (the source gives no licence file)"

SOURCES: dict[str, DatasetSource] = {
    "caltech101": DatasetSource(
        "caltech-101.zip", "caltech-101", True, "CC BY 4.0", "https://data.caltech.edu/records/mzrjq-6wc02"
    ),
    "oxford_pets": DatasetSource(
        "oxford_pets.zip", "oxford_pets", False, "CC BY-SA 4.0", "https://www.robots.ox.ac.uk/~vgg/data/pets/"
    ),
    "stanford_cars": DatasetSource(
        "stanford_cars.zip",
        "stanford_cars",
        False,
        _RESEARCH,
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
    ),
    "oxford_flowers": DatasetSource(
        "oxford_flowers.zip", "oxford_flowers", False, _RESEARCH, "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
    ),
    "food101": DatasetSource(
        "food101.zip", "food-101", True, _RESEARCH, "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"
    ),
    "fgvc_aircraft": DatasetSource(
        "fgvc_aircraft.zip",
        "fgvc_aircraft",
        True,
        "non-commercial research only (images © their photographers)",
        "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
    ),
    "sun397": DatasetSource(
        "sun397.zip", "sun397", False, _RESEARCH, "https://vision.princeton.edu/projects/2010/SUN/"
    ),
    "dtd": DatasetSource(
        "dtd.zip",
        "dtd",
        True,
        "research use only",
        "https://www.robots.ox.ac.uk/~vgg/data/dtd/",
        revision=_DTD_COMMIT,
        sha256="5ba4d3000e60f5541ba15a082033ca0696eee68125e9c28edff3dbe22f04313b",
        size=626071992,
    ),
    "eurosat": DatasetSource("eurosat.zip", "eurosat", True, "MIT", "https://github.com/phelber/EuroSAT"),
    "ucf101": DatasetSource("ucf101.zip", "ucf101", False, _RESEARCH, "https://www.crcv.ucf.edu/data/UCF101.php"),
    "imagenet_v2": DatasetSource(
        "imagenetv2.zip",
        "imagenetv2",
        False,
        "MIT (images: ImageNet terms)",
        "https://github.com/modestyachts/ImageNetV2",
    ),
    "imagenet_sketch": DatasetSource(
        "imagenet-sketch.zip", "imagenet-sketch", False, "MIT", "https://github.com/HaohanWang/ImageNet-Sketch"
    ),
    "imagenet_a": DatasetSource(
        "imagenet-adversarial.zip",
        "imagenet-adversarial",
        True,
        "MIT",
        "https://github.com/hendrycks/natural-adv-examples",
    ),
    "imagenet_r": DatasetSource(
        "imagenet-rendition.zip", "imagenet-rendition", True, "MIT", "https://github.com/hendrycks/imagenet-r"
    ),
    # Dassl's DG datasets: no default repository (see the module doc); `--repo_id` names a mirror.
    "pacs": DatasetSource(
        "pacs.zip", "pacs", False, _RESEARCH, "https://domaingeneralization.github.io/", repo_id=None
    ),
    "vlcs": DatasetSource(
        "vlcs.zip",
        "vlcs",
        False,
        _RESEARCH,
        "https://github.com/KaiyangZhou/Dassl.pytorch/blob/master/DATASETS.md",
        repo_id=None,
    ),  # fmt: skip
    "office_home": DatasetSource(
        "office_home.zip",
        "office_home",
        False,
        "non-commercial research and educational use",
        "https://www.hemanthdv.org/officeHomeDataset.html",
        repo_id=None,
    ),
    "domainnet": DatasetSource(
        "domainnet.zip", "domainnet", False, "fair use, research only", "https://ai.bu.edu/M3SDA/", repo_id=None
    ),
}
# ImageNet is in no repository (its licence forbids redistribution): https://image-net.org/download.php
NOT_DOWNLOADABLE = {"imagenet": "https://image-net.org/download.php (its terms forbid redistribution)"}

__all__ = ["DEFAULT_REPO_ID", "DEFAULT_REPO_TYPE", "NOT_DOWNLOADABLE", "SOURCES", "DatasetSource"]
