"""The datasets a config can name as `data.dataset`, in one table.

The authors' datasets are TFDS configs of `tfds_builder.Pix2pix`, prepared on first use; the
other sources are the built-in synthetic facades, a folder of pairs read as it is, and a folder
prepared under a name of its own. Adding one of the authors' datasets: one entry in `AUTHORS`
(and a config file), its tests.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class AuthorsDataset:
  """One of the authors' aligned A|B datasets (`datasets/download_pix2pix_dataset.sh`)."""
  name: str
  splits: tuple[str, ...]  # the split folders the authors ship
  description: str
  downloadable: bool = True  # the authors' tarball may be downloaded
  split_folders: dict = dataclasses.field(default_factory=dict)  # {split: other folder names}
  edges: bool = False  # A is an edge map (the demo draws black strokes on white)


AUTHORS = {d.name: d for d in (
    AuthorsDataset("facades", ("train", "val", "test"),
                   "CMP Facades: A photo, B colour label map (paper task: BtoA)."),
    AuthorsDataset("maps", ("train", "val"), "Google Maps: A aerial photo, B map."),
    AuthorsDataset("cityscapes", ("train", "val"),
                   "Cityscapes: A photo, B colour label map (paper task: BtoA). Manual "
                   "preparation only (licence).",
                   downloadable=False, split_folders={"val": ("test",)}),
    AuthorsDataset("edges2shoes", ("train", "val"), "UT Zappos50K: A HED edges, B shoe photo.",
                   edges=True),
    AuthorsDataset("edges2handbags", ("train", "val"),
                   "iGAN handbags: A HED edges, B handbag photo.", edges=True),
    AuthorsDataset("night2day", ("train", "val", "test"),
                   "Transient Attributes: A night, B day image of the same webcam."),
)}
SYNTHETIC, FOLDER = "synthetic", "folder"
PREPARED_FOLDER = "pix2pix_folder/"  # + the name given to `prepare --dataset folder --name`


def is_known(name) -> bool:
  return isinstance(name, str) and (name in AUTHORS or name in (SYNTHETIC, FOLDER) or (
      name.startswith(PREPARED_FOLDER) and len(name) > len(PREPARED_FOLDER)))


def choices() -> str:
  """The allowed values, as an error message lists them."""
  return (f"{SYNTHETIC}, {FOLDER}, {PREPARED_FOLDER}NAME (prepared with "
          f"pix2pix_jax.data.prepare) or one of {', '.join(AUTHORS)}")
