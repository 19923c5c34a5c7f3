"""Pictures: filter grids (as in the classic denoising-autoencoder figures), reconstructions
next to their inputs, loss curves, and pretext tasks' inputs captioned with their labels. PNGs are written atomically (temporary file, fsync,
rename). Filter grids and reconstructions need only PIL; the loss curve uses matplotlib when
it is installed and a plain PIL drawing otherwise."""
import math
import numbers

import numpy as np
import torch
from PIL import Image, ImageDraw

from ._atomic import atomic_write

BACKGROUND = 0  # black separators between tiles, as in tile_raster_images


def tile_images(images, image_shape, columns=None, value_range=None, padding=1):
    """A uint8 [rows·(h+p)-p, cols·(w+p)-p] mosaic of `images` [N, h·w]: each image scaled to
    [0, 255] on its own, or all by one fixed `value_range` (low, high)."""
    images = _as_numpy_rows("images", images)
    h, w = _image_shape(image_shape, images.shape[1])
    n = images.shape[0]
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / columns))
    if value_range is None:
        low, high = images.min(1, keepdims=True), images.max(1, keepdims=True)
    else:
        low, high = value_range
    scaled = np.clip((images - low) / np.maximum(high - low, 1e-12), 0.0, 1.0)
    mosaic = np.full((rows * (h + padding) - padding, columns * (w + padding) - padding), BACKGROUND, np.uint8)
    for i, image in enumerate(scaled):
        r, c = divmod(i, columns)
        mosaic[r * (h + padding): r * (h + padding) + h, c * (w + padding): c * (w + padding) + w] = \
            np.round(image.reshape(h, w) * 255)
    return mosaic


def _positive(name, value):
    """An integer >= 1 (NumPy integers too); the error names the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def filters_image(W, image_shape=(28, 28), n_filters=100, columns=None, zoom=2):
    """PIL image of the first `n_filters` rows of W [H, D] (one hidden unit's weights each)."""
    _positive("n_filters", n_filters)
    _positive("zoom", zoom)
    if columns is not None:
        _positive("columns", columns)
    W = _as_numpy_rows("W", W)[:n_filters]
    return _zoomed(tile_images(W, image_shape, columns), zoom)


def save_filters(W, path, image_shape=(28, 28), n_filters=100, columns=None, zoom=2):
    """Write the grid of hidden units' filters (rows of W [H, D], or a model's weight) as a PNG."""
    W = getattr(W, "weight", W)
    save_png(filters_image(W, image_shape, n_filters, columns, zoom), path)


def save_filter_panels(weights, titles, path, image_shape=(28, 28), n_filters=100, zoom=2):
    """Filter grids side by side, each under its title (e.g. 0%, 25%, 50% masking)."""
    if len(weights) != len(titles) or not weights:
        raise ValueError(f"weights and titles must be non-empty lists of one length, got {len(weights)} and {len(titles)}")
    panels = [filters_image(getattr(W, "weight", W), image_shape, n_filters, zoom=zoom) for W in weights]
    title_h, gap = 18, 12
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    height = max(p.height for p in panels) + title_h
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    x = 0
    for panel, title in zip(panels, titles):
        canvas.paste(panel, (x, title_h))
        draw.text((x + 2, 3), str(title), fill=0)
        x += panel.width + gap
    save_png(canvas, path)


def reconstructions_grid(inputs, reconstructions, corrupted=None, image_shape=(28, 28), n_images=10):
    """The uint8 mosaic of save_reconstructions: one row of `n_images` clean inputs, then (for
    a denoising model) the corrupted inputs the model was given, then the reconstructions."""
    rows = [_as_numpy_rows("inputs", inputs)[:n_images]]
    if corrupted is not None:
        rows.append(_as_numpy_rows("corrupted", corrupted)[:n_images])
    rows.append(_as_numpy_rows("reconstructions", reconstructions)[:n_images])
    names = ("inputs", "corrupted", "reconstructions") if corrupted is not None else ("inputs", "reconstructions")
    for name, row in zip(names[1:], rows[1:]):
        if row.shape != rows[0].shape:
            raise ValueError(f"inputs {rows[0].shape} and {name} {row.shape} must match")
    # One fixed range [0, 1]: reconstructions are drawn as the intensities they are.
    return tile_images(np.concatenate(rows), image_shape, columns=len(rows[0]), value_range=(0.0, 1.0))


def save_reconstructions(inputs, reconstructions, path, image_shape=(28, 28), n_images=10, zoom=2, corrupted=None):
    """Inputs (top row) above their reconstructions (bottom row), `n_images` of each; with
    `corrupted`, the corrupted inputs in a row between them (see reconstructions_grid)."""
    mosaic = reconstructions_grid(inputs, reconstructions, corrupted, image_shape, n_images)
    save_png(_zoomed(mosaic, zoom), path)


# The captions of the pretext pictures: what each task's label means.
RELATIVE_DIRECTIONS = ("NW", "N", "NE", "W", "E", "SW", "S", "SE")  # relative_patches' labels 0..7
PRETEXT_CAPTIONS = {
    "rotation": lambda label: f"{label}: {90 * label} ccw",  # degrees counter-clockwise
    "jigsaw": lambda label: f"perm {label}",
    "relative": lambda label: f"{label}: {RELATIVE_DIRECTIONS[label]}",
}


def labelled_grid(images, captions, image_shape=(28, 28), columns=None, zoom=3):
    """PIL image of `images` [N, h·w] (intensities in [0, 1]) in a grid, each tile with its
    caption beneath it."""
    _positive("zoom", zoom)
    images = _as_numpy_rows("images", images)
    captions = [str(c) for c in captions]
    if len(captions) != len(images):
        raise ValueError(f"captions must give one text per image: {len(captions)} for {len(images)} images")
    h, w = _image_shape(image_shape, images.shape[1])
    columns = columns or max(1, math.ceil(math.sqrt(len(images))))
    caption_h, gap = 14, 4
    cell_w, cell_h = w * zoom + gap, h * zoom + caption_h
    rows = math.ceil(len(images) / columns)
    canvas = Image.new("L", (columns * cell_w - gap, rows * cell_h), 255)
    draw = ImageDraw.Draw(canvas)
    for i, (image, caption) in enumerate(zip(images, captions)):
        r, c = divmod(i, columns)
        tile = tile_images(image[None], (h, w), columns=1, value_range=(0.0, 1.0))
        canvas.paste(_zoomed(tile, zoom), (c * cell_w, r * cell_h))
        draw.text((c * cell_w + 1, r * cell_h + h * zoom + 1), caption, fill=0)
    return canvas


def save_labelled_images(images, captions, path, image_shape=(28, 28), columns=None, zoom=3):
    """Write labelled_grid(images, captions, ...) as a PNG."""
    save_png(labelled_grid(images, captions, image_shape, columns, zoom), path)


def patch_pair_layouts(centres, neighbours, labels, patch, empty=0.3):
    """[N, s·s] images, s = 3·patch + 2: each centre patch in the middle of a 3 x 3 board and
    its neighbour in the cell its label names (0..7 row by row, the centre skipped); the other
    cells are grey (`empty`), one black pixel between cells."""
    _positive("patch", patch)
    centres, neighbours = _as_numpy_rows("centres", centres), _as_numpy_rows("neighbours", neighbours)
    labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
    if centres.shape != neighbours.shape or centres.shape[1] != patch * patch or labels.shape != (len(centres),):
        raise ValueError(f"centres {centres.shape} and neighbours {neighbours.shape} must be [N, patch²] with "
                         f"patch = {patch}, and labels [N], got {labels.shape}")
    if labels.min() < 0 or labels.max() > 7:
        raise ValueError(f"labels must be neighbour numbers 0..7, got {labels.min()}..{labels.max()}")
    side = 3 * patch + 2
    boards = np.zeros((len(centres), side, side))
    for board in boards:
        for cell in range(9):
            r, c = divmod(cell, 3)
            board[r * (patch + 1): r * (patch + 1) + patch, c * (patch + 1): c * (patch + 1) + patch] = empty
    for board, centre, neighbour, label in zip(boards, centres, neighbours, labels):
        for cell, pixels in ((4, centre), (label + (label >= 4), neighbour)):  # cell 4 is the centre
            r, c = divmod(int(cell), 3)
            board[r * (patch + 1): r * (patch + 1) + patch, c * (patch + 1): c * (patch + 1) + patch] = \
                pixels.reshape(patch, patch)
    return boards.reshape(len(boards), -1)


def save_pretext_examples(task, inputs, views, labels, path, image_shape=(28, 28), patch=None):
    """A picture of a pretext task's inputs with their labels: for rotation and jigsaw the
    images (top row) above the rotated or shuffled ones captioned with the label (the angle,
    the permutation index); for relative the centre and neighbour patch of each pair on a
    3 x 3 board, captioned with the neighbour's number and direction. `views` and `labels`
    are what sslkern.nn.PretextClassifier.generate returns."""
    if task not in PRETEXT_CAPTIONS:
        raise ValueError(f"task must be one of {sorted(PRETEXT_CAPTIONS)}, got {task!r}")
    labels = [int(v) for v in torch.as_tensor(labels).cpu()]
    captions = [PRETEXT_CAPTIONS[task](label) for label in labels]
    if task == "relative":
        if patch is None:
            raise ValueError("patch (the patch side) is needed for task 'relative'")
        boards = patch_pair_layouts(views[0], views[1], labels, patch)
        side = 3 * patch + 2
        return save_labelled_images(boards, captions, path, (side, side), columns=len(boards), zoom=4)
    inputs = _as_numpy_rows("inputs", inputs)
    shown = _as_numpy_rows("views", views[0])
    if shown.shape != inputs.shape:
        raise ValueError(f"inputs {inputs.shape} and views {shown.shape} must match")
    return save_labelled_images(np.concatenate([inputs, shown]), ["input"] * len(inputs) + captions, path,
                                image_shape, columns=len(inputs))


def save_loss_curve(losses, path, title="training loss", xlabel="epoch", ylabel="objective"):
    """Plot `losses` (a list, or a fit() history with a "loss" list) against 1..n."""
    losses = losses["loss"] if isinstance(losses, dict) else losses
    losses = [float(v) for v in losses]
    if not losses:
        raise ValueError("losses must hold at least one value")
    try:
        import matplotlib
    except ImportError:
        return save_png(_pil_curve(losses, title), path)
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.plot(range(1, len(losses) + 1), losses, marker="o" if len(losses) < 30 else None)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")


def save_png(image, path):
    with atomic_write(path) as f:
        image.save(f, format="PNG")


def _pil_curve(losses, title, size=(500, 320), margin=40):
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    w, h = size[0] - 2 * margin, size[1] - 2 * margin
    steps = max(len(losses) - 1, 1)
    points = [(margin + w * i / steps, margin + h * (1 - (v - low) / span)) for i, v in enumerate(losses)]
    draw.rectangle([margin, margin, margin + w, margin + h], outline="gray")
    draw.line(points if len(points) > 1 else points * 2, fill="navy", width=2)
    draw.text((margin, 10), f"{title}: {losses[0]:.4g} -> {losses[-1]:.4g}", fill="black")
    return image


def _zoomed(mosaic, zoom):
    image = Image.fromarray(mosaic)  # a 2-D uint8 array is mode "L"
    return image.resize((image.width * zoom, image.height * zoom), Image.NEAREST) if zoom > 1 else image


def _as_numpy_rows(name, value):
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu", torch.float64).numpy()
    value = np.asarray(value, dtype=np.float64)
    if value.ndim != 2 or value.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [N, D], got shape {value.shape}")
    return value


def _image_shape(image_shape, d):
    if image_shape is None:
        side = int(round(math.sqrt(d)))
        if side * side != d:
            raise ValueError(f"image_shape is needed: {d} features are not a square image")
        return side, side
    h, w = image_shape
    if h * w != d:
        raise ValueError(f"image_shape {tuple(image_shape)} has {h * w} pixels but the rows have {d} values")
    return int(h), int(w)
