"""``sise benchmark``: the paper's benchmark, every (image, class) pair, every method, every
metric, resumable, in one process, K local ones (``--nproc``) or under ``torchrun``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sise.cli.arguments import DEMO_MODEL, batch_size, resolve_device
from sise.errors import SiseError

#: The command's line in ``sise --help``.
BENCHMARK_HELP = "the paper's benchmark: every (image, class) pair, every method, every metric"


def add_benchmark_command(commands: argparse._SubParsersAction) -> None:
    """Add ``sise benchmark`` to the command line's sub-commands."""
    from sise.eval.benchmark.metric_names import DEFAULT_METRICS, OPT_IN_METRICS
    from sise.eval.benchmark.metric_settings import MetricSettings

    bench = commands.add_parser(
        "benchmark",
        help=BENCHMARK_HELP,
        description="Explain every ground-truth class of every image with each method, score "
        "the maps with the paper's metrics, store the per-pair results in SQLite (resumable) and "
        "print the paper's table. Scale out with torchrun --nproc_per_node=K -m sise.cli "
        "benchmark ... or --nproc K.",
    )
    bench.add_argument(
        "--dataset",
        required=True,
        help="voc2007:PATH, coco2014:PATH, synthetic[:PATH] or photos[:PATH]",
    )
    bench.add_argument(
        "--model",
        default=DEMO_MODEL,
        help=f"{DEMO_MODEL} (default: the offline demo model), synthetic-vgg, synthetic-resnet, "
        "torchray-vgg16:CKPT, torchray-resnet50:CKPT, a torchvision name or timm:NAME (with "
        "--checkpoint)",
    )
    bench.add_argument("--checkpoint", help="weights for a torchvision / timm model")
    bench.add_argument("--methods", help="comma-separated (default: all registered methods)")
    bench.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help=f"comma-separated (default: {', '.join(DEFAULT_METRICS)}; "
        f"opt-in, computed only when named: {', '.join(OPT_IN_METRICS)})",
    )
    bench.add_argument("--limit", type=int, help="first N images of the split")
    bench.add_argument("--split", help="dataset split (default test; val2014 for COCO)")
    bench.add_argument("--db", default="results.sqlite", help="SQLite results file")
    bench.add_argument(
        "--out",
        help="folder for the Markdown/CSV tables and the figure (default: the --db file's "
        "folder; with --report-only, none)",
    )
    bench.add_argument("--name", help="file-name stem of the outputs")
    bench.add_argument("--size", type=int, help="input size (default: the model's own)")
    bench.add_argument(
        "--device",
        help="where the model runs: cpu, cuda, cuda:N or mps (default: cuda when torch sees a "
        "GPU, else cpu)",
    )
    bench.add_argument(
        "--score",
        choices=["softmax", "sigmoid", "logit"],
        help="explained score (default: softmax for the single-label photos set, sigmoid for "
        "the multi-label VOC, COCO and synthetic data)",
    )
    for setting in dataclasses.fields(MetricSettings):  # the metric settings, each once
        bench.add_argument(
            f"--{setting.name.replace('_', '-')}",
            type=_setting_type(setting.name),
            default=setting.default,
            choices=setting.metadata.get("choices"),
            help=str(setting.metadata.get("help", "")).replace("%", "%%"),  # argparse formats
        )
    bench.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="a method option, e.g. extremal.iterations=300 or extremal.areas=0.05,0.1 "
        "(repeatable)",
    )
    bench.add_argument(
        "--no-scale-pixel-options",
        action="store_true",
        help="keep Extremal Perturbation's pixel-sized defaults (meant for 224 px) as they are",
    )
    bench.add_argument(
        "--batch-size",
        type=batch_size,
        default="auto",
        help="masked inputs per forward pass, or 'auto' (default: sized from the free GPU "
        "memory, 32 on a CPU)",
    )
    bench.add_argument(
        "--pack", type=int, help="pairs explained per method call (default: 8 on a GPU, 1 on a CPU)"
    )
    bench.add_argument(
        "--workers",
        type=int,
        help="processes reading the next images ahead (default: 4 on a GPU, 0 on a CPU)",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--figure-pairs", type=int, default=4, help="pairs in the example figure")
    bench.add_argument("--no-progress", action="store_true")
    bench.add_argument(
        "--distributed", action="store_true", help="require a torchrun (torch.distributed) launch"
    )
    bench.add_argument("--nproc", type=int, help="run in K local processes (no torchrun needed)")
    bench.add_argument(
        "--report-only", action="store_true", help="only print the table from the database"
    )
    bench.add_argument(
        "--all-pairs",
        action="store_true",
        help="aggregate each method over the pairs it completed (default: only the pairs every "
        "method completed)",
    )
    bench.add_argument("--throttle", type=float, default=0.0, help=argparse.SUPPRESS)
    bench.set_defaults(handler=command_benchmark)


def _setting_type(name: str) -> type:
    """The argparse type of a :class:`~sise.eval.benchmark.scoring.MetricSettings` field (its
    annotation, without ``| None``)."""
    import typing

    from sise.eval.benchmark.metric_settings import MetricSettings

    hint = typing.get_type_hints(MetricSettings)[name]
    types = [t for t in typing.get_args(hint) or (hint,) if t is not type(None)]
    return types[0] if isinstance(types[0], type) else str


def _default_benchmark_score(dataset: str) -> str:
    """Softmax for ImageNet classifiers on the photos set; sigmoid for multi-label data."""
    return "softmax" if dataset.partition(":")[0].strip().lower() == "photos" else "sigmoid"


def command_benchmark(args: argparse.Namespace) -> int:
    from sise.eval.benchmark.run import BenchmarkConfig, run_benchmark, run_benchmark_local
    from sise.eval.benchmark.scoring import MetricSettings
    from sise.methods.registry import DISPLAY_NAMES, METHODS
    from sise.options import parse_method_options

    resolve_device(args)
    methods = (
        [m.strip() for m in args.methods.split(",") if m.strip()]
        if args.methods is not None
        else [m for m in DISPLAY_NAMES if m in METHODS]
    )
    if args.nproc is not None and args.nproc < 1:
        raise SiseError(f"--nproc must be at least 1, got {args.nproc}")
    config = BenchmarkConfig(
        dataset=args.dataset,
        model=args.model,
        methods=methods,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        db=args.db,
        out=_out_folder(args),
        limit=args.limit,
        split=args.split,
        checkpoint=args.checkpoint,
        input_size=args.size,
        device=args.device,
        score=args.score or _default_benchmark_score(args.dataset),
        metric_settings=MetricSettings(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(MetricSettings)}
        ),
        method_options=parse_method_options(args.option),
        scale_pixel_options=not args.no_scale_pixel_options,
        batch_size=args.batch_size,
        pack=args.pack,
        workers=args.workers,
        seed=args.seed,
        figure_pairs=args.figure_pairs,
        name=args.name,
        progress=not args.no_progress,
        throttle=args.throttle,
        report_only=args.report_only,
        common_only=not args.all_pairs,
    )
    config.validate()  # before any process starts or anything is computed
    if args.nproc is not None and args.nproc > 1:
        run_benchmark_local(config, args.nproc)
        return 0
    result = run_benchmark(config, distributed=args.distributed)
    if result is not None:
        print(result.markdown)
        for path in result.files:
            print(f"wrote {path}")
        if config.out is None:
            print("--report-only writes no file: add --out FOLDER for the Markdown, CSV and figure")
    return 0


def _out_folder(args: argparse.Namespace) -> str | None:
    """Where the tables and the figure go: ``--out``, else beside the database; nowhere with
    ``--report-only`` and no ``--out`` (it writes nothing, also in a read-only folder)."""
    if args.out is not None:
        return str(args.out)
    return None if args.report_only else str(Path(args.db).parent)
