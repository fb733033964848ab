"""Fine-tuning VGG-19 as a classifier of the run's two domains (supplementary section 1.3; docs/method.md
section 1, "Other feature extractors").

The paper also runs the method on a VGG-19 fine-tuned to tell its two domains apart [paper]: everything frozen
except the fully connected layers and conv_5_1..conv_5_4, the last layer replaced by 4096x2, 50 epochs, batch 25,
learning rate 0.01. Ours: SGD with momentum 0.9 (``finetune.momentum``; the paper names no optimizer), cross
entropy, the crops of the translation stages (shorter side -> ``data.load_size``, a random ``data.image_size``
window, mirrored at random), epochs as random permutations of both domains' training images with the last
incomplete batch of each left out, and the new last layer initialised as torchvision initialises VGG's.

It runs on the shared engine (``train_stage``: resume, checkpoints, progress, stats) as the stage ``finetune``
of its own run directory. The held-out accuracy on the test split (``data.test_a``/``test_b``; centre
``image_size`` window of the ``load_size`` square, the training crops' scale) is logged at every sample and at
the end. The result is a weights file in torchvision's key layout (``RUN/vgg19-finetuned.pth``) that
``backbone.weights: PATH`` loads like any VGG-19 file, and ``RUN/finetune.json`` records its lineage: the base
weights' SHA-256, the data, the epochs and the accuracy. A run on it computes its own normalization statistics,
as for any new weights file (their identity includes the weights' SHA-256).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..version import __version__
from ..backbones.base import IMAGENET_MEAN, IMAGENET_STD
from ..backbones.vgg19 import CONV5_INDICES, VGG19Classifier, load_classifier
from ..backbones.weights import sha256_of
from ..config import Config
from ..data.images import scan_images
from ..device import resolve_device
from ..engine import distributed
from ..engine.checkpoint import atomic_save
from ..rundir import RunDir
from ..engine.trainer import Stage, per_rank_batch, stage_seed, train_stage
from ..errors import UserError
from ..features.squares import file_list_hash, load_square, mirror_window
from ..fileio import write_text
from ..outputs.grids import save_grid
from .experiment import seed_everything

log = logging.getLogger("deepcascade")

STAGE = "finetune"
CLASSES = ("A", "B")  # label 0 = domain A, label 1 = domain B


def prepare_for_finetuning(net: VGG19Classifier, num_classes: int = 2) -> list[str]:
    """Replace the last FC by (its input width) x ``num_classes`` and freeze everything but the FC layers and
    conv_5_1..conv_5_4; returns the names of the modules left trainable (``features.28``, ``classifier.0``...)."""
    last = net.classifier[6]
    net.classifier[6] = nn.Linear(last.in_features, num_classes)
    nn.init.normal_(net.classifier[6].weight, 0, 0.01)  # torchvision's VGG initialisation of linear layers
    nn.init.zeros_(net.classifier[6].bias)
    trainable = [f"features.{i}" for i in CONV5_INDICES] + [f"classifier.{i}" for i in (0, 3, 6)]
    modules = dict(net.named_modules())
    net.requires_grad_(False)
    for name in trainable:
        modules[name].requires_grad_(True)
    return trainable


class LabelledImages:
    """Both domains' images with labels 0 (A) and 1 (B), as ``load_size`` squares decoded on demand.

    Training batches go epoch by epoch: epoch e is a permutation of all images drawn from its own seed (the
    same on every rank), cut into global batches; each rank takes every ``world_size``-th image of a batch.
    Crop offsets and mirror flags come from the engine's generator, so a resumed run draws the same batches.
    """

    def __init__(self, files_a: list[Path], files_b: list[Path], load_size: int, image_size: int,
                 global_batch: int, seed: int, rank: int = 0, world_size: int = 1, workers: int = 2):
        self.files = [Path(f) for f in files_a] + [Path(f) for f in files_b]
        self.labels = np.array([0] * len(files_a) + [1] * len(files_b), dtype=np.int64)
        self.load_size, self.image_size = load_size, image_size
        # a global batch splits evenly over the ranks (smaller than asked only with fewer images than a batch)
        self.batch = min(global_batch, len(self.files) // world_size * world_size)
        if self.batch < 1:
            raise UserError(f"{len(self.files)} training image(s) cannot fill a batch on {world_size} ranks")
        self.steps_per_epoch = len(self.files) // self.batch
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self._pool = ThreadPoolExecutor(max(1, workers))

    def __len__(self) -> int:
        return len(self.files)

    def epoch_order(self, epoch: int) -> np.ndarray:
        g = torch.Generator().manual_seed(stage_seed(self.seed, f"{STAGE}-epoch{epoch}"))
        return torch.randperm(len(self.files), generator=g).numpy()

    def squares(self, indices) -> list[np.ndarray]:
        return list(self._pool.map(lambda i: load_square(self.files[i], self.load_size), indices))

    def train_batch(self, step: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crops and flips of this rank's share of global batch ``step`` (0-based): (images, labels)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        idx = self.epoch_order(epoch)[pos * self.batch:(pos + 1) * self.batch][self.rank::self.world_size]
        n_off = self.load_size - self.image_size + 1
        offsets = torch.randint(n_off, (len(idx), 2), generator=generator).numpy()
        flips = torch.randint(2, (len(idx),), generator=generator).numpy().astype(bool)
        S = self.image_size
        crops = [mirror_window(sq, int(o[0]), int(o[1]), S, bool(f))
                 for sq, o, f in zip(self.squares(idx), offsets, flips)]
        return _to_float(crops), torch.from_numpy(self.labels[idx])

    def centre_crops(self, indices) -> torch.Tensor:
        """The centre ``image_size`` windows of the squares of ``indices``, (N, 3, S, S) in [0, 1]."""
        o = (self.load_size - self.image_size) // 2
        return _to_float([mirror_window(sq, o, o, self.image_size, False) for sq in self.squares(indices)])

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _to_float(crops: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.divide(np.stack(crops), np.float32(255.0), dtype=np.float32))


def _framed(images: torch.Tensor, correct: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Images with a green (correctly classified) or red (misclassified) frame."""
    colour = torch.where(correct[:, None], torch.tensor([0.0, 0.8, 0.0]), torch.tensor([0.9, 0.0, 0.0]))
    frame = torch.ones_like(images[:, :1], dtype=torch.bool)
    frame[..., width:-width, width:-width] = False
    return torch.where(frame, colour[:, :, None, None].expand_as(images), images)


class FinetuneStage(Stage):
    """Trains conv_5_1..conv_5_4 and the FC layers of ``net`` (see :func:`prepare_for_finetuning`)."""

    def __init__(self, cfg: Config, run: RunDir, net: nn.Module, train: LabelledImages,
                 held_out: LabelledImages | None, device: torch.device, compat: dict):
        c = cfg.finetune
        self.cfg, self.run, self.device, self.train, self.held_out = cfg, run, device, train, held_out
        self.name = STAGE
        self.steps = c.epochs * train.steps_per_epoch
        self.batch_size = train.batch // train.world_size
        self.net = net
        self.nets = {"vgg": net}
        self.optimizers = {"vgg": torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=c.lr,
                                                  momentum=c.momentum)}
        self.compat = compat
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self._step = 0
        self.last_accuracy: tuple[int, dict] | None = None  # (step, accuracy) of the latest measurement
        net.train()  # dropout in the FC layers while training; predictions switch to eval

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits of images in [0, 1], standardized as torchvision's VGG-19 weights expect."""
        return self.net((images.to(self.device) - self.mean) / self.std)

    def on_start(self, step: int) -> None:
        self._step = step

    def next_batch(self, generator):
        batch = self.train.train_batch(self._step, generator)
        self._step += 1
        return batch

    def train_step(self, batch, ctx):
        x, y = batch[0].to(self.device, non_blocking=True), batch[1].to(self.device)
        with ctx.autocast():
            logits = self.logits(x)
        loss = F.cross_entropy(logits.float(), y)
        ctx.optimize("vgg", loss)
        return {"loss": loss.detach(), "train_acc": (logits.argmax(1) == y).float().mean()}

    @torch.no_grad()
    def predict(self, images: LabelledImages, indices=None) -> torch.Tensor:
        """Predicted labels of ``images`` (all, or ``indices``): centre crops, eval mode (no dropout)."""
        indices = list(range(len(images)) if indices is None else indices)
        bs = self.cfg.finetune.batch_size
        self.net.eval()
        try:
            preds = [self.logits(images.centre_crops(indices[i:i + bs])).argmax(1).cpu()
                     for i in range(0, len(indices), bs)]
        finally:
            self.net.train()
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)

    def held_out_accuracy(self) -> dict | None:
        """Accuracy on the test split, overall and per domain (None without a test split); logged and
        appended to stats.jsonl."""
        if self.held_out is None:
            return None
        pred, y = self.predict(self.held_out), torch.from_numpy(self.held_out.labels)
        acc = {"accuracy": float((pred == y).float().mean()), "n": len(y)}
        acc.update({name: float((pred[y == k] == k).float().mean()) if bool((y == k).any()) else None
                    for k, name in enumerate(CLASSES)})
        log.info("%s step %d: held-out accuracy %.1f%% on %d test images (A %s, B %s)", self.name, self._step,
                 100 * acc["accuracy"], acc["n"],
                 *(f"{100 * acc[k]:.1f}%" if acc[k] is not None else "-" for k in CLASSES))
        self.run.append_stats({"stage": self.name, "step": self._step, "test_accuracy": acc["accuracy"]})
        self.last_accuracy = (self._step, acc)
        return acc

    @torch.no_grad()
    def sample(self, path):
        """Logs the held-out accuracy; grid of up to four test images per domain (columns A, B; training
        images without a test split), framed green when classified as their domain, red when not."""
        self.held_out_accuracy()
        images = self.held_out or self.train
        idx = [np.flatnonzero(images.labels == k)[:4] for k in range(len(CLASSES))]
        n = min(len(i) for i in idx)
        if n:
            save_grid([_framed(images.centre_crops(i[:n]), self.predict(images, i[:n]) == k)
                       for k, i in enumerate(idx)], path)


# ---------------------------------------------------------------------------------------------- the command
def _images(folder: str, field: str, required: bool) -> list[Path]:
    if not folder or (not required and not Path(folder).is_dir()):
        if required:
            raise UserError(f"config field '{field}' is empty: set it to a folder of images (or set data.root to "
                            f"a folder with trainA/ and trainB/)")
        return []
    if not Path(folder).exists():
        raise UserError(f"config field '{field}': folder not found: {folder}")
    return scan_images(folder, f"config field '{field}'", require=required).good


def run_finetune(cfg: Config, run_dir: str | Path, resume=False) -> dict:
    """Fine-tune VGG-19 on the config's two domains into ``run_dir``; returns the lineage record.

    ``resume``: as for ``train`` (False refuses a run that has checkpoints; True continues the latest one).
    Finished runs are not retrained: with ``resume`` they only rewrite the weights file and the record.
    """
    if cfg.backbone.name != "vgg19":
        raise UserError(f"finetune trains VGG-19 (supplementary section 1.3); config field 'backbone.name' is "
                        f"{cfg.backbone.name!r}: set it to vgg19")
    device = resolve_device(cfg.engine.device)
    distributed.init_from_env(device.type)
    d, c = cfg.data, cfg.finetune
    with RunDir(run_dir) as run:
        run.adopt_config(cfg, resume=bool(resume))
        seed_everything(stage_seed(cfg.engine.seed, STAGE))
        net, base_file, base_desc = load_classifier(cfg.backbone.weights, cfg.backbone.seed)
        base_sha = sha256_of(base_file) if base_file else None
        (log.info if base_file else log.warning)("finetune: base VGG-19 %s%s", base_desc,
                                                 f" sha256={base_sha}" if base_sha else "")
        trainable = prepare_for_finetuning(net)
        files = {k: _images(getattr(d, f), f"data.{f}", req) for k, f, req in
                 (("A", "domain_a", True), ("B", "domain_b", True), ("test_A", "test_a", False),
                  ("test_B", "test_b", False))}
        per_rank = per_rank_batch(c.batch_size, cfg.engine.batch_per_rank)
        train = LabelledImages(files["A"], files["B"], d.load_size, d.image_size,
                               per_rank * distributed.world_size(), cfg.engine.seed, distributed.rank(),
                               distributed.world_size(), d.workers)
        held_out = None
        if files["test_A"] and files["test_B"]:
            held_out = LabelledImages(files["test_A"], files["test_B"], d.load_size, d.image_size, 1,
                                      cfg.engine.seed, workers=d.workers)
        else:
            log.warning("finetune: no test split of both domains (data.test_a, data.test_b): the held-out "
                        "accuracy is not measured")
        compat = {"backbone": "vgg19", "weights": base_sha or f"random:{cfg.backbone.seed}",
                  "image_size": d.image_size, "load_size": d.load_size, "task": "two-domain classifier"}
        stage = FinetuneStage(cfg, run, net.to(device), train, held_out, device, compat)
        status = train_stage(run, stage, cfg, device, resume=resume)
        record = None
        if distributed.is_main():
            last = stage.last_accuracy  # measured by the last step's sample, unless the run was already finished
            acc = last[1] if last and last[0] == stage.steps else stage.held_out_accuracy()
            weights = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            atomic_save(weights, run.finetuned_weights)
            record = {
                "weights_file": run.finetuned_weights.name, "weights_sha256": sha256_of(run.finetuned_weights),
                "base": {"weights": cfg.backbone.weights, "file": base_file, "sha256": base_sha,
                         "description": base_desc},
                "data": {k: {"folder": getattr(d, f), "images": len(files[k]),
                             "files_sha256": file_list_hash(files[k]) if files[k] else None}
                         for k, f in (("A", "domain_a"), ("B", "domain_b"), ("test_A", "test_a"),
                                      ("test_B", "test_b"))},
                "classes": {"0": "A", "1": "B"}, "trained": trainable, "status": status,
                "epochs": c.epochs, "steps": stage.steps, "batch_size": c.batch_size, "lr": c.lr,
                "momentum": c.momentum, "image_size": d.image_size, "load_size": d.load_size,
                "held_out_accuracy": acc, "deepcascade_version": __version__,
            }
            write_text(run.finetune_record, json.dumps(record, indent=1))
            log.info("finetune: weights %s (sha256 %s), lineage %s", run.finetuned_weights,
                     record["weights_sha256"], run.finetune_record)
        train.close()
        if held_out is not None:
            held_out.close()
        distributed.barrier()
    return record
