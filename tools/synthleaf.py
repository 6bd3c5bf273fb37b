"""A deterministic synthetic "leaf species" image set, made at run time (nothing downloaded).

Each species is a distribution over procedural leaf parameters: outline (ovate, lanceolate,
cordate, orbicular, deltoid, palmate- or pinnate-lobed), number and depth of lobes,
serration of the margin, tip and base, vein pattern (pinnate, palmate), colour. Every
image draws its own parameters from its species' ranges (neighbouring species overlap a
little) and its own nuisances, shared by all species so that none is a shortcut:
background (soil, stone, grass, gradient, paper), lighting, colour cast, rotation, scale,
position (leaves may run off the frame), a drop shadow, blur and sensor noise.

Rendering is vectorised over a batch: the outline is an implicit polar function
``rho < r(phi)`` evaluated on the pixel grid in each leaf's own frame, with a soft edge
of one pixel (anti-aliased). No per-pixel Python loops.

    images, labels, class_names = generate(100, size=96, n_classes=8, seed=0)
    write_folder("leaves/", 100)      # leaves/<species>/<species>_00000.png

Same arguments, same bytes (on the same numpy version).
"""

import os

import numpy as np

# name, outline parameters, vein kind, colour. Ranges are (low, high) drawn per image.
#   tip, base: semi-axes (in leaf units) of the outline toward the tip / toward the base
#   width: semi-axis across; acuminate: pointed-tip bump; notch: heart-shaped base depth
#   lobes: number of lobes around the full circle (palmate) or along the outline (pinnate)
#   depth: lobe depth (0 none .. 0.6 deep); sharp: lobe exponent (<1: broad lobes, sharp sinuses)
#   teeth: number of marginal teeth (0 none); tooth: their depth; double: doubly serrate
#   veins: "pinnate" or "palmate"; centre: where the leaf's polar origin sits (0 centre, >0 toward base)
#   hue: base RGB (0..1) and its per-image jitter
SPECIES = [
    dict(name="Acer_lobatum", tip=(0.95, 1.05), base=(0.75, 0.85), width=(0.95, 1.05),
         acuminate=(0.0, 0.1), notch=(0.25, 0.4), lobes=(5, 5), depth=(0.35, 0.55), sharp=(0.5, 0.8),
         teeth=(22, 32), tooth=(0.03, 0.07), double=0, veins="palmate",
         rgb=(0.78, 0.42, 0.12), rgb_jitter=0.1, red=0.4),
    dict(name="Quercus_sinuata", tip=(1.0, 1.1), base=(0.75, 0.9), width=(0.5, 0.62),
         acuminate=(0.0, 0.05), notch=(0.05, 0.15), lobes=(9, 11), depth=(0.22, 0.36), sharp=(0.6, 0.9),
         teeth=(0, 0), tooth=(0, 0), double=0, veins="pinnate",
         rgb=(0.26, 0.36, 0.12), rgb_jitter=0.06, red=0.1),
    dict(name="Salix_lanceola", tip=(1.0, 1.1), base=(0.85, 1.0), width=(0.17, 0.25),
         acuminate=(0.1, 0.25), notch=(0.0, 0.0), lobes=(0, 0), depth=(0.0, 0.0), sharp=(1.0, 1.0),
         teeth=(50, 70), tooth=(0.01, 0.03), double=0, veins="pinnate",
         rgb=(0.62, 0.7, 0.58), rgb_jitter=0.06, red=0.0),
    dict(name="Tilia_cordifolia", tip=(0.95, 1.05), base=(0.7, 0.8), width=(0.78, 0.9),
         acuminate=(0.15, 0.3), notch=(0.2, 0.35), lobes=(0, 0), depth=(0.0, 0.0), sharp=(1.0, 1.0),
         teeth=(34, 48), tooth=(0.03, 0.06), double=0, veins="palmate3",
         rgb=(0.3, 0.58, 0.18), rgb_jitter=0.07, red=0.0),
    dict(name="Fagus_ovalis", tip=(0.95, 1.05), base=(0.65, 0.8), width=(0.5, 0.6),
         acuminate=(0.05, 0.15), notch=(0.0, 0.0), lobes=(14, 20), depth=(0.0, 0.05), sharp=(1.0, 1.0),
         teeth=(0, 0), tooth=(0, 0), double=0, veins="pinnate",
         rgb=(0.45, 0.68, 0.14), rgb_jitter=0.07, red=0.05),
    dict(name="Betula_deltoides", tip=(0.95, 1.05), base=(0.35, 0.45), width=(0.7, 0.8),
         acuminate=(0.15, 0.3), notch=(0.0, 0.0), lobes=(0, 0), depth=(0.0, 0.0), sharp=(1.0, 1.0),
         teeth=(26, 36), tooth=(0.04, 0.08), double=1, veins="pinnate",
         rgb=(0.78, 0.72, 0.18), rgb_jitter=0.08, red=0.0),
    dict(name="Hedera_trilobata", tip=(0.9, 1.0), base=(0.7, 0.8), width=(0.85, 0.95),
         acuminate=(0.0, 0.1), notch=(0.15, 0.3), lobes=(3, 3), depth=(0.2, 0.4), sharp=(0.8, 1.2),
         teeth=(0, 0), tooth=(0, 0), double=0, veins="palmate",
         rgb=(0.12, 0.26, 0.12), rgb_jitter=0.05, red=0.0, pale_veins=True),
    dict(name="Cercis_orbicularis", tip=(0.9, 1.0), base=(0.8, 0.9), width=(0.9, 1.0),
         acuminate=(0.0, 0.08), notch=(0.25, 0.4), lobes=(0, 0), depth=(0.0, 0.0), sharp=(1.0, 1.0),
         teeth=(0, 0), tooth=(0, 0), double=0, veins="palmate3",
         rgb=(0.45, 0.2, 0.32), rgb_jitter=0.08, red=0.0),
    dict(name="Platanus_dentata", tip=(0.95, 1.05), base=(0.75, 0.85), width=(0.95, 1.05),
         acuminate=(0.0, 0.05), notch=(0.05, 0.2), lobes=(5, 5), depth=(0.15, 0.28), sharp=(1.0, 1.5),
         teeth=(10, 16), tooth=(0.05, 0.09), double=0, veins="palmate",
         rgb=(0.42, 0.58, 0.22), rgb_jitter=0.09, red=0.1),
    dict(name="Castanea_serrata", tip=(1.0, 1.1), base=(0.8, 0.95), width=(0.3, 0.38),
         acuminate=(0.1, 0.2), notch=(0.0, 0.0), lobes=(0, 0), depth=(0.0, 0.0), sharp=(1.0, 1.0),
         teeth=(28, 38), tooth=(0.07, 0.12), double=0, veins="pinnate",
         rgb=(0.30, 0.50, 0.15), rgb_jitter=0.08, red=0.05),
    dict(name="Populus_rhombica", tip=(0.9, 1.0), base=(0.6, 0.7), width=(0.7, 0.8),
         acuminate=(0.0, 0.05), notch=(0.0, 0.0), lobes=(4, 4), depth=(0.1, 0.2), sharp=(1.0, 1.4),
         teeth=(30, 44), tooth=(0.02, 0.04), double=0, veins="pinnate",
         rgb=(0.52, 0.62, 0.30), rgb_jitter=0.08, red=0.0),
    dict(name="Liriodendron_truncata", tip=(0.7, 0.8), base=(0.8, 0.9), width=(0.95, 1.05),
         acuminate=(-0.3, -0.2), notch=(0.05, 0.15), lobes=(4, 4), depth=(0.2, 0.35), sharp=(0.8, 1.2),
         teeth=(0, 0), tooth=(0, 0), double=0, veins="palmate",
         rgb=(0.45, 0.62, 0.25), rgb_jitter=0.09, red=0.0),
]

MAX_CLASSES = len(SPECIES)
BATCH = 64

# Background palettes (dark, light) in 0..1 RGB, one picked per image whatever its species.
_BACKGROUNDS = np.array([
    [(0.22, 0.15, 0.09), (0.50, 0.38, 0.25)],   # soil
    [(0.30, 0.30, 0.30), (0.62, 0.60, 0.56)],   # stone
    [(0.18, 0.28, 0.10), (0.45, 0.55, 0.25)],   # grass
    [(0.70, 0.68, 0.62), (0.95, 0.94, 0.90)],   # paper
    [(0.10, 0.12, 0.20), (0.45, 0.50, 0.65)],   # blue-grey gradient
    [(0.35, 0.22, 0.12), (0.75, 0.55, 0.30)],   # dry leaves / wood
], dtype=np.float32)


def species(n_classes=8):
    """The species of an ``n_classes`` set: the first ones of :data:`SPECIES`, sorted by name
    (so that label k is the k-th class folder, as ``image_dataset_from_directory`` numbers them)."""
    _check_classes(n_classes)
    return sorted(SPECIES[:int(n_classes)], key=lambda s: s["name"])


def class_names(n_classes=8):
    """The species names for ``n_classes``, in label order."""
    return [s["name"] for s in species(n_classes)]


def _check_classes(n_classes):
    if not 2 <= int(n_classes) <= MAX_CLASSES:
        raise ValueError("n_classes must be between 2 and %d (got %r)" % (MAX_CLASSES, n_classes))


# --------------------------------------------------------------------------- parameters

_VEIN_KIND = {"pinnate": 0, "palmate": 1, "palmate3": 2}


def _draw_params(labels, rng, n_classes=None):
    """Per-image parameters (dict of arrays [N]) for ``labels`` indexing ``species(n_classes)``."""
    n = len(labels)
    table = species(n_classes or max(2, int(np.max(labels, initial=0)) + 1))
    p = {}

    def rng_range(key):
        lo = np.array([table[c][key][0] for c in labels], dtype=np.float64)
        hi = np.array([table[c][key][1] for c in labels], dtype=np.float64)
        # stretch each range by 15 % on both sides so that neighbouring species overlap
        pad = 0.15 * (hi - lo)
        return lo - pad + (hi - lo + 2 * pad) * rng.random(n)

    for key in ("tip", "base", "width", "acuminate", "notch", "depth", "sharp", "tooth"):
        p[key] = rng_range(key)
    p["lobes"] = np.round(rng_range("lobes"))
    p["teeth"] = np.round(rng_range("teeth"))
    p["double"] = np.array([table[c]["double"] for c in labels], dtype=np.float64)
    p["veins"] = np.array([_VEIN_KIND[table[c]["veins"]] for c in labels], dtype=np.float64)
    p["pale_veins"] = np.array([float(table[c].get("pale_veins", False)) for c in labels])
    p["tooth_phase"] = rng.random(n)
    p["asym"] = rng.normal(0, 0.04, n)             # left/right asymmetry of the width
    # colour: species colour, jitter, sometimes autumn red
    base = np.array([table[c]["rgb"] for c in labels], dtype=np.float64)
    jitter = np.array([table[c]["rgb_jitter"] for c in labels])[:, None]
    rgb = base + rng.normal(0, 1, (n, 3)) * jitter * np.array([0.8, 0.6, 0.5])
    red = np.array([table[c]["red"] for c in labels])
    autumn = rng.random(n) < red
    rgb[autumn] = rgb[autumn] * 0.4 + np.array([0.55, 0.18, 0.08]) * 0.6 + rng.normal(0, 0.05, (autumn.sum(), 3))
    p["rgb"] = np.clip(rgb, 0.03, 0.95)
    # pose
    p["angle"] = rng.uniform(-np.pi, np.pi, n)
    p["scale"] = rng.uniform(0.6, 0.9, n)        # leaf "radius" as a fraction of the half-image
    p["cx"] = rng.normal(0, 0.16, n)
    p["cy"] = rng.normal(0, 0.16, n)
    p["stem"] = rng.uniform(0.15, 0.45, n)
    # scene
    p["bg"] = rng.integers(0, len(_BACKGROUNDS), n)
    p["bg_mix"] = rng.uniform(0.2, 0.8, n)
    p["bg_grad"] = rng.uniform(-0.35, 0.35, (n, 2))
    p["light"] = rng.uniform(0.6, 1.25, n)
    p["light_grad"] = rng.uniform(-0.35, 0.35, (n, 2))
    p["cast"] = rng.normal(1.0, 0.06, (n, 3))
    p["shadow"] = rng.uniform(0.0, 0.45, n)
    p["shadow_dx"] = rng.integers(-4, 5, n)
    p["shadow_dy"] = rng.integers(-4, 5, n)
    p["blur"] = np.where(rng.random(n) < 0.2, rng.uniform(0.3, 1.0, n), 0.0)
    p["noise"] = rng.uniform(2.0, 9.0, n)
    p["vein_strength"] = rng.uniform(0.15, 0.4, n)
    return p


# --------------------------------------------------------------------------- rendering helpers

def _interp_matrix(size, grid):
    """[size, grid + 1] weights that spread a (grid + 1)-point random grid smoothly over size pixels."""
    t = np.linspace(0, grid, size, dtype=np.float32)[:, None]
    k = np.arange(grid + 1, dtype=np.float32)[None, :]
    m = np.exp(-((t - k) / 0.75) ** 2)
    return (m / m.sum(axis=1, keepdims=True)).astype(np.float32)


_INTERP = {}


def _smooth_noise(rng, b, size, grid):
    """Low-frequency noise [b, size, size], roughly -1..1: a random grid, Gaussian-interpolated."""
    m = _INTERP.get((size, grid))
    if m is None:
        m = _INTERP[(size, grid)] = _interp_matrix(size, grid)
    g = rng.standard_normal((b, grid + 1, grid + 1), dtype=np.float32)
    return np.einsum("hg,bgk,wk->bhw", m, g, m, optimize=True) * 1.6


def _box_blur(x):
    """3x3 box blur of [b, h, w, c] (edges replicated)."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    v = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    return (v[:, :, :-2] + v[:, :, 1:-1] + v[:, :, 2:]) / 9.0


def _outline(phi, q):
    """Radius of the leaf outline r(phi) [b, h, w]; phi measured from the tip direction."""
    c, s = np.cos(phi), np.sin(phi)
    a = np.where(c > 0, q["tip"], q["base"])
    width = q["width"] * (1 + q["asym"] * np.sign(s))
    r = 1.0 / np.sqrt((c / a) ** 2 + (s / width) ** 2)
    r = r * (1 + q["acuminate"] * np.exp(-(phi / 0.22) ** 2))
    r = r * (1 - q["notch"] * np.exp(-((np.pi - np.abs(phi)) / 0.28) ** 2))
    # lobes: peaks at phi = 2 pi j / k, sinuses between them (k = 0: none)
    lobed = np.abs(np.cos(q["lobes"] * phi / 2)) ** q["sharp"]
    r = r * (1 - q["depth"] * (1 - lobed))
    # serration: sawtooth teeth, optionally doubled
    teeth = q["teeth"] * (phi / (2 * np.pi) + 0.5) + q["tooth_phase"]
    saw = teeth - np.floor(teeth)
    teeth2 = 2 * teeth
    saw2 = teeth2 - np.floor(teeth2)
    r = r * (1 - q["tooth"] * (saw + q["double"] * 0.6 * saw2) / (1 + 0.6 * q["double"]))
    return r


def _render_batch(p, idx, size, rng):
    b = len(idx)
    q = {k: (v[idx].astype(np.float32).reshape((b,) + (1,) * 2 + v.shape[1:])
             if v.ndim == 1 else v[idx].astype(np.float32)) for k, v in p.items()}
    for k in ("tip", "base", "width", "acuminate", "notch", "depth", "sharp", "tooth", "lobes",
              "teeth", "double", "tooth_phase", "asym"):
        q[k] = q[k].reshape(b, 1, 1)
    half = size / 2.0
    coords = (np.arange(size, dtype=np.float32) + 0.5) / half - 1.0
    yy, xx = np.meshgrid(coords, coords, indexing="ij")  # [h, w], -1..1
    ang = p["angle"][idx].astype(np.float32)[:, None, None]
    scale = p["scale"][idx].astype(np.float32)[:, None, None]
    dx = xx[None] - p["cx"][idx].astype(np.float32)[:, None, None]
    dy = yy[None] - p["cy"][idx].astype(np.float32)[:, None, None]
    ca, sa = np.cos(ang), np.sin(ang)
    u = (dx * ca + dy * sa) / scale     # along the midrib, toward the tip
    v = (-dx * sa + dy * ca) / scale    # across
    rho = np.sqrt(u * u + v * v)
    phi = np.arctan2(v, u)
    r = _outline(phi, q)
    px = scale * half                   # pixels per leaf unit
    leaf = np.clip((r - rho) * px + 0.5, 0, 1)
    # petiole (stem) from the base outward
    base_r = q["base"] * (1 - q["notch"])
    stem_len = p["stem"][idx].astype(np.float32)[:, None, None]
    stem_w = 0.9 / px + 0.012
    along = -u - base_r * 0.6
    stem = np.clip((stem_w - np.abs(v)) * px + 0.5, 0, 1) * (along > 0) * (along < stem_len + 0.4 * base_r)
    stem = np.maximum(stem - leaf, 0)

    # veins: midrib + secondary (pinnate: oblique lines; palmate: rays to the lobes)
    kind = q["veins"].reshape(b, 1, 1)
    mid_w = 1.0 / px + 0.01
    midrib = np.clip(1 - np.abs(v) / mid_w, 0, 1) * (u > -base_r)
    spacing = 0.16 + 0.04 * np.sin(3.1 * q["tooth_phase"])
    t = (u - 0.7 * np.abs(v)) / spacing
    pinnate = np.clip(1 - np.abs(t - np.round(t)) * spacing / (0.7 / px + 0.006), 0, 1)
    k = np.where(q["lobes"] >= 3, q["lobes"], 5.0)
    k = np.where(kind == 2, 7.0, k)
    step = 2 * np.pi / k
    a = phi - np.round(phi / step) * step
    palmate = np.clip(1 - rho * np.abs(np.sin(a)) / (0.8 / px + 0.008), 0, 1) * (np.abs(phi) < 2.6)
    secondary = np.where(kind == 0, pinnate, palmate) * (rho < 0.92 * r) * (1 - np.exp(-(rho / 0.1) ** 2))
    veins = np.maximum(midrib, secondary * 0.8) * leaf

    # The picture is composed with per-pixel scalar weights [b, h, w] times per-image colours
    # [b, 3], so that only a few operations touch the full [b, h, w, 3] array.
    # Leaf: base colour, mottled texture, darker toward the margin, veins lighter (or pale).
    rgb = q["rgb"].reshape(b, 1, 1, 3)
    tex = 1 + 0.12 * _smooth_noise(rng, b, size, 6) + 0.05 * _smooth_noise(rng, b, size, 20)
    rim = np.clip(rho / np.maximum(r, 1e-3), 0, 1)
    shade = tex * (1.05 - 0.25 * rim ** 3)
    pale = q["pale_veins"].reshape(b, 1, 1)
    vs = (q["vein_strength"].reshape(b, 1, 1) + 0.25 * pale) * veins
    leaf_gain = shade * (1 + vs * ((1 - pale) * 1.35 - 1))        # times the leaf colour
    leaf_add = vs * (pale * 0.75 + 0.05)                           # plus grey
    stem_rgb = rgb * 0.8 + np.float32(0.08)

    # Background: two palette colours mixed by smooth noise and a gradient, with the leaf's
    # drop shadow (its mask shifted) darkening it.
    pal = _BACKGROUNDS[p["bg"][idx]]                           # [b, 2, 3]
    jit = rng.normal(1.0, 0.08, (b, 2, 3)).astype(np.float32)
    dark, bright = pal[:, 0] * jit[:, 0], pal[:, 1] * jit[:, 1]
    m = _smooth_noise(rng, b, size, 5) * 0.5 + 0.5
    m = m + 0.35 * _smooth_noise(rng, b, size, 18) * q["bg_mix"].reshape(b, 1, 1)
    g = q["bg_grad"]
    m = m + g[:, 0, None, None] * xx + g[:, 1, None, None] * yy
    m = np.clip(m, 0, 1)
    shadow = np.empty_like(leaf)
    for j in range(b):
        shadow[j] = np.roll(leaf[j], (int(p["shadow_dy"][idx[j]]), int(p["shadow_dx"][idx[j]])), (0, 1))
    bg_gain = (1 - leaf - stem) * (1 - q["shadow"].reshape(b, 1, 1) * shadow)

    # Lighting: brightness and a linear gradient (scalar field), a colour cast (per image).
    lg = q["light_grad"]
    lit = q["light"].reshape(b, 1, 1) * (1 + lg[:, 0, None, None] * xx + lg[:, 1, None, None] * yy)
    lit = lit * np.float32(255.0)
    # In-place on two [b, h, w, 3] buffers: fresh temporaries of this size cost page faults.
    img = np.empty((b, size, size, 3), dtype=np.float32)
    tmp = np.empty_like(img)
    np.multiply(m[..., None], (bright - dark)[:, None, None], out=img)
    img += dark[:, None, None]
    img *= (bg_gain * lit)[..., None]
    np.multiply(rgb, (leaf * leaf_gain * lit)[..., None], out=tmp)
    img += tmp
    img += (leaf * leaf_add * lit)[..., None]
    np.multiply(stem_rgb, (stem * lit)[..., None], out=tmp)
    img += tmp
    img *= q["cast"].reshape(b, 1, 1, 3)
    # Optics and sensor: a blur for some images, then noise (uniform, with the drawn std).
    blurred = np.flatnonzero(p["blur"][idx] > 0)
    if len(blurred):
        w = q["blur"][blurred].reshape(-1, 1, 1, 1)
        img[blurred] = img[blurred] * (1 - w) + _box_blur(img[blurred]) * w
    rng.random(dtype=np.float32, out=tmp)
    tmp -= np.float32(0.5)
    tmp *= q["noise"].reshape(b, 1, 1, 1) * np.float32(np.sqrt(12.0))
    img += tmp
    img += np.float32(0.5)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


# --------------------------------------------------------------------------- API

def generate(n_per_class, size=96, n_classes=8, seed=0):
    """Make a synthetic leaf-species image set.

    Args:
      n_per_class: images per species.
      size: image side in pixels (square images).
      n_classes: number of species (2..12): the first ones of :data:`SPECIES`, numbered in
        name order (label k is ``class_names[k]``, the k-th folder of ``write_folder``).
      seed: everything follows from it: same arguments, same bytes.

    Returns:
      (images uint8 [N, size, size, 3] RGB, labels int64 [N], class_names list of str),
      N = n_per_class * n_classes, in a shuffled (seeded) order.
    """
    _check_classes(n_classes)
    n_per_class, size = int(n_per_class), int(size)
    if n_per_class < 0 or size < 8:
        raise ValueError("n_per_class must be >= 0 and size >= 8")
    root = np.random.SeedSequence([int(seed), 7001, n_classes, size])
    param_seq, order_seq, pixel_seq = root.spawn(3)
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    labels = labels[np.random.default_rng(order_seq).permutation(len(labels))]
    params = _draw_params(labels, np.random.default_rng(param_seq), n_classes)
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    batch_seeds = pixel_seq.spawn((len(labels) + BATCH - 1) // BATCH)
    for j, start in enumerate(range(0, len(labels), BATCH)):
        idx = np.arange(start, min(start + BATCH, len(labels)))
        images[idx] = _render_batch(params, idx, size, np.random.default_rng(batch_seeds[j]))
    return images, labels, class_names(n_classes)


def write_folder(out_dir, n_per_class, size=96, n_classes=8, seed=0):
    """Generate a set and write it as ``out_dir/<species>/<species>_NNNNN.png``.

    The folder is the layout ``image_dataset_from_directory`` and ``leafsub`` read.
    Returns (out_dir, labels, class_names).
    """
    from PIL import Image

    images, labels, names = generate(n_per_class, size=size, n_classes=n_classes, seed=seed)
    for name in names:
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    counters = [0] * len(names)
    for image, label in zip(images, labels):
        name = names[label]
        path = os.path.join(out_dir, name, "%s_%05d.png" % (name, counters[label]))
        counters[label] += 1
        tmp = path + ".tmp"
        Image.fromarray(image).save(tmp, format="PNG")
        os.replace(tmp, path)
    return out_dir, labels, names


def contact_sheet(images, labels=None, columns=12, path=None):
    """A grid of images as one uint8 array (and a PNG at ``path`` when given), for a look."""
    n = len(images)
    rows = (n + columns - 1) // columns
    h, w = images.shape[1:3]
    sheet = np.full((rows * (h + 2), columns * (w + 2), 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = image
    if path is not None:
        from PIL import Image
        Image.fromarray(sheet).save(path)
    return sheet
