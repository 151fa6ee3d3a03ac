#!/usr/bin/env python3
"""Opens a checkpoint written by examples/finetune_resnet with real PyTorch, loads its state_dict strictly into
torchvision's architecture with the replaced fc, and checks the test accuracy against the one torchlet reported.

usage: check_torch_accuracy.py CHECKPOINT ACCURACY TEST_SUBSET [FASHION_MNIST_DIR]
Exits 0 when |PyTorch's accuracy - ACCURACY| <= 0.2 points, 1 otherwise, 77 when torch/torchvision are missing.
"""
import gzip
import struct
import sys

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:  # the test is skipped, not failed, without PyTorch
    print("skipping: %s" % e)
    sys.exit(77)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    path, reported, subset = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    root = sys.argv[4] if len(sys.argv) > 4 else "/usr/share/datasets/fashion-mnist"
    # PyTorch 2.x: weights_only=True; 1.13's weights-only loader cannot read floats (best_acc), so plain load there
    major = int(torch.__version__.split(".")[0])
    ckpt = torch.load(path, weights_only=True) if major >= 2 else torch.load(path)
    arch, num_classes = ckpt["arch"], int(ckpt["num_classes"])
    model = getattr(torchvision.models, arch)()
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    model.load_state_dict(ckpt["state_dict"])  # strict
    model.eval()

    images = read_idx(root + "/t10k-images-idx3-ubyte.gz")
    labels = read_idx(root + "/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    keep = labels >= 5  # the target task: classes 5-9, remapped to 0-4 in order
    images, labels = images[keep], labels[keep] - 5
    if subset > 0:
        images, labels = images[:subset], labels[:subset]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1).repeat(1, 3, 1, 1)
    x = (x - 0.2860) / 0.3530
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)])
    acc = 100.0 * (pred.numpy() == labels).mean()
    print("PyTorch %s on %d test images: accuracy %.2f%% (torchlet reported %.2f%%), epoch %d, best_acc %.2f"
          % (arch, len(labels), acc, reported, ckpt["epoch"], ckpt["best_acc"]))
    sys.exit(0 if abs(acc - reported) <= 0.2 else 1)


if __name__ == "__main__":
    main()
