"""Tiny torch models, data and torchvision stand-ins for tests/test_torch.py (not a test module).

torchvision is not installed here (PyPI's torchvision does not import beside this
machine's CPU torch wheel), and leafsub does not depend on it: it identifies a
``transforms.Compose`` by class names and attributes. The stand-ins below carry
torchvision's names and attributes, and compute what torchvision computes.
"""

import numpy as np

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Mean colours of the 4 classes: dark grey, light grey, red, blue. A model trained with
# Normalize separates the greys by brightness and red/blue by channel: forgetting
# Normalize confuses the greys, scrambling the channels confuses red and blue.
COLORS = np.array([[40, 40, 40], [215, 215, 215], [200, 60, 60], [60, 60, 200]], np.float32)


def color_images(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(COLORS), n)
    x = COLORS[labels][:, None, None, :] + rng.normal(0, 20, (n, size, size, 3))
    x += np.linspace(-20, 20, size)[None, :, None, None]  # a left-right gradient
    return np.clip(np.round(x), 0, 255).astype(np.uint8), labels.astype(np.int64)


def trained_cnn(seed=0, steps=150, size=32):
    """A small torch.nn CNN trained on ToTensor + ImageNet Normalize inputs (a few seconds)."""
    import torch

    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, len(COLORS)))
    images, labels = color_images(512, size, seed=100 + seed)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255 - mean) / std
    y = torch.from_numpy(labels)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


# ----------------------------------------------------------------- torchvision stand-ins

class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


class ToTensor:
    """PIL image -> float CHW tensor in [0, 1] (torchvision.transforms.ToTensor)."""

    def __call__(self, pic):
        import torch

        return torch.from_numpy(np.asarray(pic, np.float32).transpose(2, 0, 1) / 255.0)


class Normalize:
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = list(mean), list(std), inplace

    def __call__(self, tensor):
        import torch

        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (tensor - mean) / std


class InterpolationMode:
    """torchvision.transforms.InterpolationMode members have a string ``value``."""

    def __init__(self, value):
        self.value = value


class Resize:
    def __init__(self, size, interpolation=InterpolationMode("bilinear"), max_size=None,
                 antialias=True):
        self.size, self.interpolation, self.max_size, self.antialias = (
            size, interpolation, max_size, antialias)


class CenterCrop:
    def __init__(self, size):
        self.size = size


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p


# ----------------------------------------------------------------- hand-written submissions

# What a student writes for a marker's torch harness: TorchScript loaded by hand, the
# batch as numpy uint8 [N, H, W, 3]. It also proves that the child has no TensorFlow.
MODEL_PY = '''\
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class Model:
    def __init__(self):
        self.net = torch.jit.load(os.path.join(HERE, "SubmissionModel", "model.pt"))
        self.net.eval()

    def predict(self, X):
        assert "tensorflow" not in sys.modules, "the torch child imported TensorFlow"
        x = torch.from_numpy(np.array(X, dtype=np.float32))
        n, h, w, c = x.shape
{to_model}
        with torch.no_grad():
            return self.net(x).argmax(dim=1).numpy()
'''

TO_MODEL = {
    "correct": "        x = x.permute(0, 3, 1, 2) / 255.0\n        x = (x - MEAN) / STD",
    "forgot-normalize": "        x = x.permute(0, 3, 1, 2) / 255.0",
    "nhwc-as-nchw": "        x = x.reshape(n, c, h, w) / 255.0\n        x = (x - MEAN) / STD",
}


def model_py(kind):
    return MODEL_PY.format(to_model=TO_MODEL[kind])


# For a torch.Tensor NCHW harness: scales the caller's tensor in place.
IN_PLACE_MODEL_PY = MODEL_PY.replace(
    "        x = torch.from_numpy(np.array(X, dtype=np.float32))\n        n, h, w, c = x.shape\n"
    "{to_model}\n",
    "        X.div_(255.0)  # in place: the caller's batch changes\n"
    "        x = (X - MEAN) / STD\n").replace("{{", "{").replace("}}", "}")
