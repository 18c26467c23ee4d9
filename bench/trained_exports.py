"""Briefly trained DeepLabV3-MobileNetV3 and SSDlite, for `export_models.py` (its torch environment only).

With random weights and batch-norm statistics recomputed on N(0, 1) images these two networks are chaotic: they
amplify input noise by 26 and 33 dB (bench/README.md, "Mixed precision on the exports"), so no 8-bit
quantization of them can reach the integer bound, in rcc or in onnxruntime's own int8. Trained weights are not
reachable from this machine (download.pytorch.org and huggingface.co have no route), so these hooks train each
network for a few hundred steps on a synthetic task it can learn, and the export is verified on images from the
same generator: whether a trained network of the same architecture passes is the question.

The task: light noisy backgrounds with 1–3 filled rectangles and ellipses of random colours, each of one of 4
classes (the shape and a colour family). The segmenter learns the per-pixel class (21 outputs, as torchvision
builds it, classes 0–4 used); the detector learns the shapes' boxes and classes. Seeded throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CLASSES = 4            # rectangle/ellipse × warm/cool colour; 0 is the background
PALETTES = {0: ((0.8, 0.2, 0.1), (0.9, 0.6, 0.1)), 1: ((0.1, 0.3, 0.8), (0.1, 0.7, 0.6))}   # warm, cool


def shapes(rng: np.random.Generator, count: int, size: int) -> tuple[np.ndarray, np.ndarray, list]:
    """`count` images [count, 3, size, size] (normalised to mean 0, std 1 over the data's range), their class
    masks [count, size, size] (int64) and, per image, (boxes [k, 4] as x0, y0, x1, y1, labels [k])."""
    images = np.empty((count, 3, size, size), np.float32)
    masks = np.zeros((count, size, size), np.int64)
    targets = []
    rows, columns = np.mgrid[0:size, 0:size]
    for index in range(count):
        image = np.full((3, size, size), rng.uniform(0.75, 0.95)) + rng.normal(0, 0.03, (3, size, size))
        boxes, labels = [], []
        for _ in range(rng.integers(1, 4)):
            width, height = rng.integers(size // 6, size // 2, 2)
            x0, y0 = rng.integers(0, size - width), rng.integers(0, size - height)
            ellipse, cool = int(rng.integers(0, 2)), int(rng.integers(0, 2))
            if ellipse:
                inside = ((columns - x0 - width / 2) / (width / 2)) ** 2 + ((rows - y0 - height / 2) / (height / 2)) ** 2 <= 1
            else:
                inside = (columns >= x0) & (columns < x0 + width) & (rows >= y0) & (rows < y0 + height)
            colour = np.array(PALETTES[cool][rng.integers(0, 2)]) + rng.normal(0, 0.05, 3)
            image[:, inside] = colour[:, None]
            label = 1 + 2 * ellipse + cool
            masks[index][inside] = label
            boxes.append((x0, y0, x0 + width, y0 + height))
            labels.append(label)
        images[index] = (image - 0.6) / 0.3
        targets.append((np.array(boxes, np.float32), np.array(labels, np.int64)))
    return images, masks, targets


def sample_images(seed: int, samples: int, size: int) -> np.ndarray:
    """Verification inputs [samples, 1, 3, size, size] from the training generator (another seed)."""
    images, _, _ = shapes(np.random.default_rng(seed + 1000), samples, size)
    return images[:, None]


def _train(network: Any, steps: int, rate: float, loss_of_step: Any, what: str) -> None:
    """`steps` AdamW steps (cosine-decayed learning rate from `rate`) on `loss_of_step(step)`'s dict of losses."""
    import torch

    network.train()
    optimiser = torch.optim.AdamW(network.parameters(), lr=rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for step in range(steps):
        losses = loss_of_step(step)
        optimiser.zero_grad()
        sum(losses.values()).backward()
        optimiser.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"{what} step {step}: " + ", ".join(f"{k} {v.item():.3f}" for k, v in losses.items()), flush=True)
    network.eval()


def trained_segmenter(model: Any, steps: int = 1500, batch: int = 16, size: int = 64, seed: int = 0) -> None:
    """Train a torchvision segmenter wrapped as export_models' OutOnly (`model.model`) in place, then eval mode.
    The background's pixels weigh a fifth in the loss (it covers most of each image)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    weights = torch.tensor([0.2] + [1.0] * (model.model.classifier[-1].out_channels - 1))

    def losses(step: int) -> dict:
        images, masks, _ = shapes(rng, batch, size)
        logits = model.model(torch.from_numpy(images))["out"]
        return {"cross_entropy": torch.nn.functional.cross_entropy(logits, torch.from_numpy(masks), weight=weights)}

    _train(model.model, steps, 2e-3, losses, "segmenter")
    model.eval()
    images, masks, _ = shapes(np.random.default_rng(seed + 99), 32, size)
    with torch.no_grad():
        found = model(torch.from_numpy(images)).argmax(1).numpy()
    shape_pixels = masks > 0
    print(f"segmenter held-out pixel accuracy {np.mean(found == masks):.3f}, on shapes "
          f"{np.mean(found[shape_pixels] == masks[shape_pixels]):.3f}", flush=True)


def trained_detector(model: Any, steps: int = 300, batch: int = 8, size: int = 96, seed: int = 0) -> None:
    """Train a torchvision detector wrapped as export_models' Detections (`model.model`) in place (its own
    training losses), then eval mode."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    def losses(step: int) -> dict:
        images, _, targets = shapes(rng, batch, size)
        return model.model(list(torch.from_numpy(images)),
                           [{"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}
                            for boxes, labels in targets])

    _train(model.model, steps, 1e-3, losses, "detector")
    model.eval()
