"""Training data: the folder of photos as square crops, and the seeded, resumable, torchrun-aware batch order."""

import math
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from style_transfer.image_io import IMAGE_EXTENSIONS, image_to_tensor, list_images, load_rgb
from utils import UserError, warn


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every readable image below a folder, as RGB, shorter side scaled and centre-cropped."""

    def __init__(self, root: str | Path, image_size: int):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"--datapath: no such folder: {root}")
        candidates = list_images(root)
        self.paths = [p for p in tqdm(candidates, desc="checking images", unit="img",
                                      disable=len(candidates) < 5000, leave=False) if _readable(p)]
        if not self.paths:
            raise UserError(f"--datapath: no readable image in {root} "
                            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            try:
                return image_to_tensor(self._crop(load_rgb(path, self.image_size)))
            except UserError as exc:  # a file that opened but fails to decode: use the next one
                warn(f"skipping {exc}")
        raise UserError("--datapath: no image could be decoded")

    def _crop(self, image: Image.Image) -> Image.Image:
        left = (image.width - self.image_size) // 2
        top = (image.height - self.image_size) // 2
        return image.crop((left, top, left + self.image_size, top + self.image_size))


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception as exc:
        warn(f"skipping unreadable image {path}: {exc}")
        return False


class EpochBatchSampler(torch.utils.data.Sampler):
    """This process's batches of one epoch: a seeded shuffle per epoch, from any step on.

    Each step's global batch is perm[k*B:(k+1)*B] for B = batch_size * world_size, and rank r takes
    the r-th part of it, so N processes see exactly the data of one process with N times the batch,
    and a resumed run sees exactly what the uninterrupted run would have seen.

    The last global batch of an epoch can be ragged: its images do not divide evenly among the processes,
    and with fewer images than processes some get none (a DataLoader cannot hand out an empty batch).
    Such a process is given the epoch's first image as padding (a wrap-around, as DistributedSampler
    pads), and loss_scale() weighs each process's mean loss by its share of the global batch, the padding
    by 0, so that the averaged gradient is still the mean over exactly the global batch's images.
    """

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def steps_per_epoch(self) -> int:
        return math.ceil(self.size / (self.batch_size * self.world_size))

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        global_batch = self.batch_size * self.world_size
        for step in range(self.start_step, self.steps_per_epoch()):
            chunk = order[step * global_batch:(step + 1) * global_batch]
            yield torch.tensor_split(chunk, self.world_size)[self.rank].tolist() or order[:1].tolist()

    def __len__(self) -> int:
        return self.steps_per_epoch() - self.start_step

    def global_images(self, step_in_epoch: int) -> int:
        """How many images the global batch of that step of an epoch has (fewer than the full one at the end)."""
        global_batch = self.batch_size * self.world_size
        return min(global_batch, self.size - step_in_epoch * global_batch)

    def part(self, step_in_epoch: int) -> tuple[int, int]:
        """Where this process's images sit in the global batch of that step: (the first one's position, how many),
        as __iter__ splits it; (the global batch's size, 0) for a process given only padding."""
        images = self.global_images(step_in_epoch)
        base, extra = divmod(images, self.world_size)  # tensor_split: the first `extra` parts get one more
        return self.rank * base + min(self.rank, extra), base + (self.rank < extra)

    def loss_scale(self, step_in_epoch: int) -> float:
        """The factor on this process's mean loss at that step of an epoch: its images' share of the global
        batch, times the number of processes (DDP averages the processes' gradients). 1 where the global
        batch divides evenly (always, with one process), 0 for a process given only padding."""
        return self.part(step_in_epoch)[1] * self.world_size / self.global_images(step_in_epoch)
