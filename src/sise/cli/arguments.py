"""What the commands share: the argument parser, the checked argument types, the model and
photo arguments of ``sise explain`` and ``sise compare``, and the default ``--device``."""

from __future__ import annotations

import argparse
from typing import NoReturn

# Nothing here imports torch at module level: ``sise --help`` builds this parser, and should not
# wait for torch (about 10 s on a cold start); the checks that need torch import it when run.

#: The offline demo model (:data:`sise.models.loading.DEMO_MODEL`, checked equal by a test),
#: written out here so that the help text does not import the model loader.
DEMO_MODEL = "efficientnet_lite0"
#: The methods, in the paper's column order (:data:`sise.methods.registry.DISPLAY_NAMES`'
#: keys, checked equal by a test), for the help text.
METHOD_NAMES: tuple[str, ...] = (
    "gradcam", "gradcampp", "extremal", "rise", "scorecam", "ig", "fullgrad", "sise",
)  # fmt: skip
#: The scores a class index can be explained with (:data:`sise.core.scores.ScoreKind`).
SCORES: tuple[str, ...] = ("softmax", "sigmoid", "logit")
#: The named budgets (:data:`sise.methods.registry.BUDGETS`, checked equal by a test).
BUDGET_NAMES: tuple[str, ...] = ("quick", "paper")


def resolve_device(args: argparse.Namespace) -> None:
    """Put the default device into ``args.device`` where ``--device`` was not given (imports
    torch, so it is done by a command, not by the parser)."""
    if getattr(args, "device", None) is None:
        from sise.runtime import default_device

        args.device = default_device()


#: ``--size`` bounds: below, no CNN keeps a feature map; above, one image fills gigabytes.
MIN_SIZE, MAX_SIZE = 8, 4096
#: ``--batch-size`` when it is not given: sized from the free memory (as the Python API).
DEFAULT_BATCH_SIZE = "auto"


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like the package's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def image_size(text: str) -> int:
    """argparse type of ``--size``: an integer number of pixels in [MIN_SIZE, MAX_SIZE]."""
    try:
        size = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pixels") from None
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise argparse.ArgumentTypeError(
            f"{size} px is out of range: use {MIN_SIZE} to {MAX_SIZE} (224 for ImageNet models)"
        )
    return size


def positive_int(text: str) -> int:
    """argparse type of a count: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def batch_size(text: str) -> int | str:
    """argparse type of ``--batch-size``: ``auto`` or a whole number >= 1."""
    if text.strip().lower() == "auto":
        return "auto"
    return positive_int(text)


def selection_threshold(text: str) -> float:
    """argparse type of ``--mu``: SISE's selection threshold, a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is out of range: use 0 <= mu < 1")
    return value


def device(text: str) -> str:
    """argparse type of ``--device``: a device torch knows and this machine has."""
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}: use cpu, cuda, cuda:N or mps"
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has no CUDA GPU that torch can use; use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available; use --device cpu")
    elif parsed.type != "cpu":
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}: use cpu, cuda or mps")
    return text


def add_model_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """The photo(s), the model and its classes, and the explained score: the arguments of
    ``sise explain`` (``many``: files, folders and patterns) and ``sise compare`` (one photo)."""
    if many:
        parser.add_argument(
            "images",
            nargs="*",
            metavar="IMAGE",
            help="image files, folders or glob patterns ('photos/*.jpg'); default: the cat photo "
            "shipped with sise",
        )
    else:
        parser.add_argument(
            "image",
            nargs="?",
            help="photo to explain (default: the cat photo shipped with sise)",
        )
    parser.add_argument(
        "--model",
        default=None,
        help=f"{DEMO_MODEL} (default, offline ImageNet weights), a torchvision name "
        "(resnet50, vgg16, ...) or timm:NAME",
    )
    parser.add_argument(
        "--checkpoint", help="state-dict file to load instead of pretrained weights"
    )
    parser.add_argument("--num-classes", type=int, help="output size of the checkpoint's head")
    parser.add_argument("--classes", help="text file with one class name per line")
    parser.add_argument("--target", help="class to explain, as an index or a name (default: top-1)")
    parser.add_argument(
        "--device",
        type=device,
        default=None,
        help="where the model runs: cpu, cuda, cuda:N or mps (default: cuda when torch sees a "
        "GPU, else cpu)",
    )
    parser.add_argument(
        "--size", type=image_size, default=224, help="input size in pixels (square)"
    )
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default=None,
        help="masked inputs per forward pass of SISE, Score-CAM and RISE: a number or 'auto' "
        "(default: as many as fit in the free GPU memory, 32 on a CPU)",
    )
    parser.add_argument(
        "--score",
        choices=SCORES,
        help="the score of the class that is explained: softmax (the class probability among "
        "all classes, for single-label models), sigmoid (the class's own probability, for "
        "multi-label models) or logit (the raw output). Default: each method's own: the logit "
        "for Grad-CAM, Grad-CAM++, FullGrad and Integrated Gradients, the softmax probability "
        "for the others; sigmoid also makes the printed top-5 sigmoid scores",
    )
    parser.add_argument(
        "--budget",
        choices=BUDGET_NAMES,
        help="how much work the slow methods do: paper (the published settings: RISE 4,000 "
        "masks, 8,000 for VGG; Extremal Perturbation 800 iterations on 4 areas; Integrated "
        "Gradients 50 steps) or quick (RISE 1,000 masks, Extremal Perturbation 300 iterations "
        "on one area, Integrated Gradients 20 steps: seconds per method on a CPU). Default: "
        "paper on a CUDA GPU, quick elsewhere; --option values win over it",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide the progress bars and the time estimates",
    )
    parser.add_argument(
        "--option",
        action="append",
        metavar="METHOD.KEY=VALUE",
        help="a method option, e.g. rise.n_masks=2000 or extremal.iterations=300 (repeatable)",
    )
