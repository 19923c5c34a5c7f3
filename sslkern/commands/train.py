"""Train an autoencoder on real images (a denoising autoencoder on the embedded MNIST subset
by default) and write a run folder: filters.png, reconstructions.png, loss.png and
metrics.json (final loss, linear-probe accuracy of the features and of raw pixels,
samples/s, backend, device, the full configuration). reconstructions.png shows test digits,
for a denoising model the corrupted input it was given, and the reconstructions.
--model rotation|jigsaw|relative trains a pretext classifier instead
(sslkern.nn.PretextClassifier: the encoder under a softmax head, on labels drawn from the
images) and writes its filters and loss; the probe then reads its codes. Checkpoints
go to OUT/checkpoints; --resume continues from the newest good one, on the same data
(--new-data to continue it on other data). Progress: a bar on a terminal, one line per epoch
when the output goes to a file.

--experiment lecture reproduces the lecture's comparison instead: linear-probe accuracy of
raw pixels, a plain, a denoising (25% and 50% masking), a contractive, a higher-order
contractive and a sparse autoencoder, with their filters side by side (OUT/experiment.md,
OUT/experiment.json, OUT/filters_masking.png, OUT/filters_penalties.png).

--experiment pretext is the lecture's second half: raw pixels, ae, dae 25%/50%, cae,
inpainting, rotation, jigsaw and relative location, every one with --hidden units and the
same budget, probed on the held-out images (OUT/heldout/), then pretrained on the training
digits 0-4 only and probed on the digits 5-9 (OUT/transfer/: the probe trains on the
training part's 5-9 and is scored on the held-out part's). Writes OUT/experiment.md (both
tables, with standard errors), OUT/experiment.json and a picture of each task's inputs with
their labels (OUT/pretext_<task>.png).
"""
import json
import math
import os
import platform
import time

MODELS = ("ae", "dae", "cae", "hcae", "sparse", "inpainting", "stacked", "rotation", "jigsaw", "relative")
PRETEXT_MODELS = ("rotation", "jigsaw", "relative")  # sslkern.nn.PretextClassifier tasks
PRETEXT_DEFAULTS = {"grid": (2, 2), "patch": 8, "gap": 2}  # --grid for jigsaw, --patch/--gap for relative
PRETEXT_FLAGS = {"jigsaw": ("grid",), "relative": ("patch", "gap")}
# Sized for a laptop CPU: 20 epochs of 8,000 images at H=500 take 17-25 s of training at
# 6,600-9,800 samples/s on the shared 2-core dev machine (one thread; benchmarks/EXPERIMENT.md).
DEFAULTS = {"hidden": "500", "epochs": 20, "batch_size": 64, "lr": 0.1, "optimizer": "sgd"}
MODEL_NOISE = {  # model -> (corruption, level, contractive) unless given on the command line
    "ae": ("none", 0.0, 0.0),
    "dae": ("mask", 0.25, 0.0),
    "cae": ("none", 0.0, 0.1),
    "hcae": ("none", 0.0, 0.1),
    "sparse": ("none", 0.0, 0.0),
    "inpainting": ("block", 0.25, 0.0),  # the context encoder's hole: a quarter of the image
    "stacked": ("mask", 0.25, 0.0),
}
# model -> its extra penalties (sslkern.autoencoder_loss's keywords) unless given on the command line
MODEL_PENALTIES = {"hcae": {"higher_order": 0.1}, "sparse": {"sparsity": 0.1}, "inpainting": {"hole_weight": 2.0}}
LECTURE_RUNS = [  # (label, model, corruption, level, contractive)
    ("autoencoder", "ae", "none", 0.0, 0.0),
    ("denoising, 25% masking", "dae", "mask", 0.25, 0.0),
    ("denoising, 50% masking", "dae", "mask", 0.5, 0.0),
    ("contractive, lambda=0.1", "cae", "none", 0.0, 0.1),
    ("higher-order contractive, lambda=0.1 gamma=0.1", "hcae", "none", 0.0, 0.1),
    ("sparse, KL beta=0.1 rho=0.05", "sparse", "none", 0.0, 0.0),
]

# --experiment pretext: the lecture's autoencoders, inpainting and the three pretext classifiers
PRETEXT_EXPERIMENT_RUNS = [run for run in LECTURE_RUNS if run[1] in ("ae", "dae", "cae")] + [
    ("inpainting, one {1:.0%} square hole, hole weight {hole_weight:g}".format(
        *MODEL_NOISE["inpainting"], **MODEL_PENALTIES["inpainting"]), "inpainting", *MODEL_NOISE["inpainting"]),
    ("rotation (4 angles)", "rotation", "none", 0.0, 0.0),
    ("jigsaw, {0}x{1} tiles".format(*PRETEXT_DEFAULTS["grid"]), "jigsaw", "none", 0.0, 0.0),
    ("relative location, {patch}x{patch} patches, gap {gap}".format(**PRETEXT_DEFAULTS), "relative", "none", 0.0, 0.0),
]
TRANSFER_SPLIT = 5  # transfer rows: pretrained on the digits 0-4, probed on the digits 5-9


def add_arguments(parser):
    from sslkern.kinds import CORRUPTIONS, PRECISIONS, SPARSITIES

    from . import _args

    parser.add_argument("--model", choices=MODELS, default="dae",
                        help="ae, dae (denoising), cae (contractive), hcae (higher-order contractive), "
                             "sparse, inpainting (block hole, hole weight 2), stacked; or a pretext classifier: "
                             "rotation, jigsaw, relative (patch position)")
    parser.add_argument("--grid", type=_args.grid, default=None, help="jigsaw: tiles, rows x columns (default 2x2)")
    parser.add_argument("--patch", type=_args.positive_int, default=None,
                        help="relative: patch side in pixels (default 8); --corruption patch: the tile side")
    parser.add_argument("--gap", type=_args.nonnegative_int, default=None,
                        help="relative: pixels between patches (default 2)")
    parser.add_argument("--hidden", type=_args.hidden_sizes, default=DEFAULTS["hidden"],
                        help="hidden units; for --model stacked a comma list of layer widths, e.g. 500,500")
    parser.add_argument("--corruption", choices=CORRUPTIONS.names(), default=None,
                        help="corruption kind (default: mask for dae/stacked, none otherwise)")
    parser.add_argument("--level", type=_args.finite_nonnegative_float, default=None, help="corruption level (default 0.25 for dae)")
    parser.add_argument("--contractive", type=_args.finite_nonnegative_float, default=None, help="contractive weight λ (default 0.1 for cae)")
    penalty = parser.add_argument_group("extra penalties (defaults: 0, or the model's: hcae gamma=0.1, sparse beta=0.1)")
    penalty.add_argument("--sparsity", type=_args.finite_nonnegative_float, default=None, help="sparsity weight beta")
    penalty.add_argument("--sparsity-target", type=_args.finite_nonnegative_float, default=None,
                         help="target mean activation rho of the kl sparsity (default 0.05)")
    penalty.add_argument("--sparsity-kind", choices=SPARSITIES.names(), default=None,
                         help="kl (mean activation toward rho; sigmoid encoder) or l1 (default kl)")
    penalty.add_argument("--higher-order", type=_args.finite_nonnegative_float, default=None,
                         help="higher-order contractive weight gamma")
    penalty.add_argument("--higher-order-sigma", type=_args.finite_nonnegative_float, default=None,
                         help="standard deviation of the input perturbations (default 0.1)")
    penalty.add_argument("--higher-order-samples", type=_args.positive_int, default=None,
                         help="perturbations per example (default 1)")
    parser.add_argument("--hole-weight", type=_args.finite_nonnegative_float, default=None,
                        help="weight of the reconstruction loss of the pixels the corruption drops "
                             "(default 1; 2 for inpainting)")
    parser.add_argument("--epochs", type=_args.nonnegative_int, default=DEFAULTS["epochs"])
    parser.add_argument("--batch-size", type=_args.positive_int, default=DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=_args.finite_positive_float, default=DEFAULTS["lr"])
    parser.add_argument("--optimizer", choices=("sgd", "momentum", "adam"), default=DEFAULTS["optimizer"])
    parser.add_argument("--seed", type=_args.seed, default=0)
    parser.add_argument("--device", type=_args.device, default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--backend", type=_args.backend_name, default="auto", help="auto, native, triton or reference")
    parser.add_argument("--data", type=_args.data_source, default="mnist-10k", help="mnist-10k, digits, or a .npy/.npz/IDX file")
    parser.add_argument("--out", type=_args.output_folder, default=None, help="run folder (default runs/train-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest good checkpoint in --out")
    parser.add_argument("--new-data", action="store_true",
                        help="with --resume: continue even though --data differs from the checkpoint's "
                             "(its length or fingerprint); without it such a resume is refused")
    parser.add_argument("--checkpoint-every", type=_args.positive_int, default=None, help="also checkpoint every N steps")
    parser.add_argument("--precision", choices=PRECISIONS.names(), default=None,
                        help="the products' precision: bf16/fp16 operands, fp32 accumulation and weights "
                             "(autoencoders; default: the parameters' fp32)")
    parser.add_argument("--cuda-graph", action="store_true", help="capture the step in a CUDA graph (noisy models need --backend triton)")
    parser.add_argument("--threads", type=_args.nonnegative_int, default=0,
                        help="CPU threads for torch; 0 (the default) keeps torch's choice. On a machine "
                             "shared with other busy processes, 1 avoids threads waiting on each other")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress output (on a terminal a bar per epoch, otherwise one line per epoch)")
    parser.add_argument("--experiment", choices=("lecture", "pretext"), default=None,
                        help="lecture: the lecture's comparison (raw pixels, ae, dae 25%%/50%%, cae, hcae, sparse); "
                             "pretext: raw pixels, ae, dae 25%%/50%%, cae, inpainting, rotation, jigsaw, relative, "
                             "probed on the held-out digits and after pretraining on the digits 0-4 only")


def run(args):
    import sslkern

    from ._args import UsageError

    if args.resume and args.out is None:
        raise UsageError("--resume needs --out (the run folder to continue)")
    for flag in PRETEXT_DEFAULTS:  # a flag the chosen model ignores is a mistake, not a no-op
        if flag == "patch" and args.model not in PRETEXT_MODELS and args.corruption == "patch":
            continue  # the patch mask's tile side
        if getattr(args, flag) is not None and flag not in PRETEXT_FLAGS.get(args.model, ()):
            raise UsageError(f"--{flag} is for --model {' or '.join(m for m, f in PRETEXT_FLAGS.items() if flag in f)}, "
                             f"not --model {args.model}")
    if args.new_data and not args.resume:
        raise UsageError("--new-data goes with --resume")
    out = args.out or os.path.join("runs", time.strftime("train-%Y%m%d-%H%M%S"))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with sslkern.use_backend(args.backend):
        if args.experiment == "lecture":
            return _lecture(args, out)
        if args.experiment == "pretext":
            return _pretext_experiment(args, out)
        metrics, _ = train_one(args, out, model_kind=args.model)
    print(_summary(out, metrics))
    return 0


def _summary(out, m):
    """The closing line; the probe only for data with labels, the loss only after a step."""
    parts = [f"wrote {out}"]
    if m["final_loss"] is not None:
        parts.append(f"loss {m['final_loss']:.4f}")
    if m.get("probe_accuracy") is not None:
        parts.append(f"linear probe {m['probe_accuracy']:.4f} (raw pixels {m['probe_accuracy_raw']:.4f})")
    if m.get("samples_per_second"):
        parts.append(f"{m['samples_per_second']:.0f} samples/s")
    parts.append(f"backend {m['backend']} on {m['device']}")
    return ", ".join(parts)


def train_one(args, out, model_kind, corruption=None, level=None, contractive=None, raw_accuracy=None,
              dataset=None, probe_split=None):
    """Train one model as `args` says, write its run folder `out`; return (metrics, model).
    It trains on `dataset` (default: --data) and probes on `probe_split` (X_train, y_train,
    X_test, y_test; default: the dataset itself, the held-out images scoring the probe)."""
    import torch

    from sslkern import backends, data, probe, train

    dataset = data.load(args.data) if dataset is None else dataset
    X_train = dataset.X_train
    X_probe, y_train, X_test, y_test = dataset if probe_split is None else probe_split
    device = _device(args.device)
    if model_kind in PRETEXT_MODELS:
        model = build_pretext_model(args, model_kind, dataset.image_shape)
    else:
        model = build_model(args, model_kind, X_train.shape[1], corruption, level, contractive,
                            image_shape=dataset.image_shape)
    backend = backends.resolve(backends.requested(), device, torch.float32).name
    started = time.perf_counter()
    history = train.fit(model, X_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        optimizer=args.optimizer, device=device, seed=args.seed,
                        checkpoint_dir=os.path.join(out, "checkpoints"), checkpoint_every=args.checkpoint_every,
                        resume="new-data" if args.new_data else args.resume, progress=not args.no_progress, cuda_graph=args.cuda_graph,
                        precision=args.precision)
    train_seconds = time.perf_counter() - started
    metrics = {"final_loss": history["loss"][-1] if history["loss"] else None,
               "samples_per_second": _mean(history["samples_per_second"]),
               "train_seconds": train_seconds, "backend": backend, "device": str(device),
               "threads": torch.get_num_threads()}
    has_labels = y_train is not None and y_test is not None and len(y_test) > 0
    if has_labels:
        metrics["probe_accuracy"] = probe.linear_probe(model, X_probe, y_train, X_test, y_test)
        if raw_accuracy is None:
            raw_accuracy = probe.linear_probe(None, X_probe, y_train, X_test, y_test)
        metrics["probe_accuracy_raw"] = raw_accuracy
    else:
        metrics["probe_accuracy"] = metrics["probe_accuracy_raw"] = None
    _write_pictures(model, dataset, history, out, device)
    metrics.update(history=history, data={"source": str(args.data), "n_train": len(X_train), "n_probe_train": len(X_probe),
                                          "n_test": len(X_test), "image_shape": dataset.image_shape},
                   config=dict(vars(args), model=model_kind, out=out, model_config=model.config()),
                   versions={"sslkern": __import__("sslkern").__version__, "torch": torch.__version__,
                             "python": platform.python_version()},
                   machine=platform.node())
    _write_json(metrics, os.path.join(out, "metrics.json"))
    return metrics, model


def build_model(args, model_kind, n_visible, corruption=None, level=None, contractive=None, image_shape=None):
    from sslkern import nn
    from sslkern.kinds import CORRUPTIONS

    from ._args import UsageError

    default_corruption, default_level, default_contractive = MODEL_NOISE[model_kind]
    corruption = _first(corruption, args.corruption, default_corruption)
    level = _first(level, args.level, default_level if corruption == default_corruption else 0.25)
    if corruption == "none":
        level = 0.0
    contractive = _first(contractive, args.contractive, default_contractive)
    penalties = {**MODEL_PENALTIES.get(model_kind, {}),
                 **{name: getattr(args, name) for name in nn.PENALTIES + ("hole_weight",)
                    if getattr(args, name, None) is not None}}
    if CORRUPTIONS[corruption].needs_image_shape:  # block and patch masks work on the images
        if model_kind == "stacked":
            raise UsageError(f"--corruption {corruption} needs images: the layers of --model stacked above the "
                             f"first see codes, not images")
        penalties.update(image_shape=image_shape, patch=args.patch if corruption == "patch" else None)
    sizes = list(args.hidden)  # parsed by _args.hidden_sizes
    try:
        if model_kind == "stacked":
            if len(sizes) == 1:
                sizes = sizes * 2
            return nn.StackedAutoencoder([n_visible] + sizes, corruption=corruption, level=level,
                                         contractive=contractive, seed=args.seed, **penalties)
        if len(sizes) != 1:
            raise UsageError(f"--hidden takes one width for --model {model_kind}, got {args.hidden}")
        return nn.TiedAutoencoder(n_visible, sizes[0], corruption=corruption, level=level,
                                  contractive=contractive, seed=args.seed, **penalties)
    except ValueError as exc:  # a combination the flags cannot check alone, e.g. kl with a tanh encoder
        raise UsageError(str(exc)) from None


def build_pretext_model(args, task, image_shape):
    """A PretextClassifier for `task` on images of `image_shape`; a bad geometry (a grid or
    patches that do not fit, a non-square image for rotation) is a usage error."""
    from sslkern import nn

    from ._args import UsageError

    if image_shape is None:
        raise UsageError(f"--model {task} needs images: --data {args.data} has no image shape")
    if len(args.hidden) != 1:
        raise UsageError(f"--hidden takes one width for --model {task}, got {args.hidden}")
    try:
        geometry = {flag: _first(getattr(args, flag), default) for flag, default in PRETEXT_DEFAULTS.items()}
        return nn.PretextClassifier(task, image_shape, args.hidden[0], seed=args.seed, **geometry)
    except ValueError as exc:
        raise UsageError(f"--model {task}: {exc}") from None


def _write_pictures(model, dataset, history, out, device):
    from sslkern import viz

    shape = dataset.image_shape
    pretext_task = getattr(model, "task", None)  # a pretext classifier reconstructs nothing
    if shape is not None:
        filter_shape = (model.patch, model.patch) if pretext_task == "relative" else shape
        viz.save_filters(model.weight.detach().cpu(), os.path.join(out, "filters.png"), image_shape=filter_shape)
    if shape is not None and pretext_task is None:
        sample = (dataset.X_test if len(dataset.X_test) else dataset.X_train)[:10]
        rows = reconstruction_rows(model, sample, device)
        viz.save_reconstructions(rows["clean"], rows["reconstruction"], os.path.join(out, "reconstructions.png"),
                                 image_shape=shape, corrupted=rows.get("corrupted"))
    if history["loss"]:
        viz.save_loss_curve(history, os.path.join(out, "loss.png"))


def reconstruction_rows(model, sample, device):
    """{"clean", "reconstruction"} on the CPU; for a model with corruption (the first layer's,
    for a stack) also "corrupted": the input as the model sees it in eval mode (its own seed),
    and the reconstruction is then of that corrupted input, as a denoising model is used."""
    import torch

    from sslkern import functional

    first = model.layers[0] if hasattr(model, "layers") else model
    model.eval()
    with torch.no_grad():
        x = sample.to(device)
        rows = {"clean": sample.cpu()}
        if first.corruption != "none":
            x = functional.corrupt(x, first.corruption, first.level, seed=first.seed,
                               image_shape=first.masks["image_shape"], patch=first.masks["patch"])
            rows["corrupted"] = x.cpu()
        rows["reconstruction"] = model.reconstruct(x).cpu()
    model.train()
    return rows


def _lecture(args, out):
    """Raw pixels, ae, dae 25%/50%, cae, hcae, sparse on the same data, epochs and optimizer."""
    from sslkern import data, viz

    dataset = data.load(args.data)
    rows, models, metrics = _probe_rows(args, out, LECTURE_RUNS, dataset)
    weights = {label: model.weight.detach().cpu() for label, model in models.items()}
    shape = dataset.image_shape or (28, 28)
    viz.save_filter_panels([weights["autoencoder"], weights["denoising, 25% masking"], weights["denoising, 50% masking"]],
                           ["0% masking", "25% masking", "50% masking"],
                           os.path.join(out, "filters_masking.png"), image_shape=shape)
    penalised = [label for label, kind, *_ in LECTURE_RUNS if kind in ("cae", "hcae", "sparse")]
    viz.save_filter_panels([weights[label] for label in penalised], [label.split(",")[0] for label in penalised],
                           os.path.join(out, "filters_penalties.png"), image_shape=shape)
    result = {"raw_pixels_probe_accuracy": rows[0]["probe_accuracy"], "runs": rows[1:], "backend": metrics["backend"],
              "device": metrics["device"], "config": metrics["config"]}
    _write_json(result, os.path.join(out, "experiment.json"))
    table = accuracy_table(rows)
    _write_text(os.path.join(out, "experiment.md"), table)
    print(table, end="")
    return 0


def _probe_rows(args, out, runs, dataset, probe_split=None):
    """Train each of `runs` ((label, model, corruption, level, contractive)) on `dataset` into
    its own folder under `out` and probe it on `probe_split` (default: the dataset's held-out
    images). Returns (rows, the label -> trained model map, the last run's metrics); the first
    row is raw pixels."""
    from sslkern import probe

    probe_split = dataset if probe_split is None else probe_split
    raw = probe.linear_probe(None, *probe_split)
    n_test = len(probe_split[2])
    rows, models, metrics = [_row("raw pixels", raw, n_test)], {}, None
    for label, kind, corruption, level, contractive in runs:
        folder = os.path.join(out, kind if kind != "dae" else f"dae{int(level * 100)}")
        print(f"== {label} -> {folder}")
        metrics, models[label] = train_one(args, folder, kind, corruption, level, contractive, raw_accuracy=raw,
                                           dataset=dataset, probe_split=probe_split)
        rows.append(_row(label, metrics["probe_accuracy"], n_test, metrics, folder))
    return rows, models, metrics


def _row(label, accuracy, n_test, metrics=None, folder=None):
    row = {"representation": label, "probe_accuracy": accuracy, "n_test": n_test,
           "standard_error": standard_error(accuracy, n_test)}
    if metrics is not None:
        row.update({key: metrics[key] for key in ("final_loss", "samples_per_second", "train_seconds")}, folder=folder)
    return row


def standard_error(accuracy, n):
    """The binomial standard error sqrt(p(1-p)/n) of an accuracy p measured on n images."""
    return math.sqrt(accuracy * (1.0 - accuracy) / n)


def accuracy_table(rows, loss_header="final loss"):
    """A Markdown table of _probe_rows' rows (accuracy ± standard error), ending in a newline."""
    lines = [f"| representation | linear-probe accuracy ± s.e. | {loss_header} | samples/s | train s |",
             "|---|---|---|---|---|"]
    for r in rows:
        numbers = [_format(r.get(key), spec) for key, spec in
                   (("final_loss", ".2f"), ("samples_per_second", ".0f"), ("train_seconds", ".0f"))]
        lines.append(f"| {r['representation']} | {r['probe_accuracy']:.4f} ± {r['standard_error']:.4f} | "
                     + " | ".join(numbers) + " |")
    return "\n".join(lines) + "\n"


def _format(value, spec):
    return " " if value is None else format(value, spec)


def _pretext_experiment(args, out):
    """The lecture's second half: raw pixels, the autoencoders and the pretext classifiers
    probed on the held-out digits, then the transfer (pretrained on the digits below
    TRANSFER_SPLIT, probed on the others); tables, JSON and a picture per task."""
    dataset = _labelled_images(args)
    source, target = transfer_split(dataset)
    heldout, models, metrics = _probe_rows(args, os.path.join(out, "heldout"), PRETEXT_EXPERIMENT_RUNS, dataset)
    transfer, _, _ = _probe_rows(args, os.path.join(out, "transfer"), PRETEXT_EXPERIMENT_RUNS, source, target)
    pictures = _pretext_pictures(models, dataset, out, _device(args.device))
    sizes = {"n_pretrain": len(source.X_train), "n_probe_train": len(target.X_train), "n_probe_test": len(target.X_test)}
    result = {"heldout": heldout, "transfer": {"source_digits": list(range(TRANSFER_SPLIT)),
                                              "target_digits": list(range(TRANSFER_SPLIT, 10)), **sizes, "runs": transfer},
              "pictures": pictures, "backend": metrics["backend"], "device": metrics["device"], "config": metrics["config"]}
    _write_json(result, os.path.join(out, "experiment.json"))
    report = _pretext_report(args, dataset, heldout, transfer, sizes, pictures)
    _write_text(os.path.join(out, "experiment.md"), report)
    print(report, end="")
    return 0


def _labelled_images(args):
    """--data as a Dataset, checked to have what the pretext experiment needs: image rows,
    labels, and digits on both sides of TRANSFER_SPLIT in both its parts."""
    from sslkern import data

    from ._args import UsageError

    dataset = data.load(args.data)
    if dataset.image_shape is None or dataset.y_train is None or dataset.y_test is None:
        raise UsageError(f"--experiment pretext needs labelled images; --data {args.data} has "
                         f"{'no image shape' if dataset.image_shape is None else 'no labels'}")
    for part, y in (("training", dataset.y_train), ("held-out", dataset.y_test)):
        if not ((y < TRANSFER_SPLIT).any() and (y >= TRANSFER_SPLIT).any()):
            raise UsageError(f"--experiment pretext needs digits below and from {TRANSFER_SPLIT} in the {part} part "
                             f"of --data {args.data} (the transfer split), got labels {sorted(set(y.tolist()))}")
    return dataset


def transfer_split(dataset, split=None):
    """(source, target) Datasets for the transfer rows, disjoint by label: source = the
    training images of the digits below `split` (default TRANSFER_SPLIT), what the models are
    pretrained on; target = the digits from `split` up, labels shifted to start at 0, the
    training part's training the probe and the held-out part's testing it."""
    from sslkern import data

    split = TRANSFER_SPLIT if split is None else split
    X_train, y_train, X_test, y_test = dataset
    low_train, low_test = y_train < split, y_test < split
    source = data.Dataset(X_train[low_train], y_train[low_train], X_test[low_test], y_test[low_test],
                          dataset.image_shape, f"{dataset.name} digits < {split}")
    target = data.Dataset(X_train[~low_train], y_train[~low_train] - split, X_test[~low_test], y_test[~low_test] - split,
                          dataset.image_shape, f"{dataset.name} digits >= {split}")
    return source, target


def _pretext_pictures(models, dataset, out, device, n_images=10):
    """pretext_<task>.png for each task of the experiment: its inputs with their labels,
    drawn from the first held-out images by the model's own generator (seed = its seed), and
    for inpainting the holed inputs and their reconstructions. Returns the files written."""
    import torch

    from sslkern import viz

    sample = dataset.X_test[:n_images]
    written = []
    for label, task, *_ in PRETEXT_EXPERIMENT_RUNS:
        if task not in PRETEXT_MODELS + ("inpainting",):
            continue
        model = models[label]
        path = os.path.join(out, f"pretext_{task}.png")
        if task == "inpainting":
            rows = reconstruction_rows(model, sample, device)
            viz.save_reconstructions(rows["clean"], rows["reconstruction"], path, image_shape=dataset.image_shape,
                                     corrupted=rows["corrupted"])
        else:
            with torch.no_grad():
                views, labels = model.generate(sample.to(device), model.seed)
            viz.save_pretext_examples(task, sample, [v.cpu() for v in views], labels.cpu(), path,
                                      image_shape=dataset.image_shape, patch=model.patch)
        written.append(os.path.basename(path))
    return written


def _pretext_report(args, dataset, heldout, transfer, sizes, pictures):
    """experiment.md of the pretext experiment: the set-up, both tables, the pictures."""
    budget = (f"epochs {args.epochs}, batch {args.batch_size}, {args.optimizer} lr {args.lr}, seed {args.seed}, "
              f"{args.hidden[0]} hidden units for every model")
    lines = [f"# Pretext tasks and transfer ({args.data}; {budget})", "",
             f"## Linear probe on the {len(dataset.X_test)} held-out images "
             f"(pretrained and probe-trained on the {len(dataset.X_train)} training images)", "",
             accuracy_table(heldout, "final loss (pretext: cross-entropy)"),
             f"## Transfer: pretrained on the digits 0-{TRANSFER_SPLIT - 1} only "
             f"({sizes['n_pretrain']} training images), probed on the digits {TRANSFER_SPLIT}-9", "",
             f"The probe trains on the {sizes['n_probe_train']} training images of the digits {TRANSFER_SPLIT}-9 "
             f"and is scored on their {sizes['n_probe_test']} held-out images.", "",
             accuracy_table(transfer, "final loss (pretext: cross-entropy)"),
             "Standard errors: sqrt(p(1-p)/n) over the n test images.", ""]
    if pictures:
        lines += ["Pictures: " + ", ".join(pictures), ""]
    return "\n".join(lines)


def _write_text(path, text):
    from sslkern._atomic import atomic_write

    with atomic_write(path, "w") as f:
        f.write(text)


def _write_json(obj, path):
    from sslkern._atomic import atomic_write

    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.write("\n")


def _device(name):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _first(*values):
    return next(v for v in values if v is not None)


def _mean(values):
    return sum(values) / len(values) if values else None
