"""A built-in synthetic street-scene dataset: no download, deterministic, fast.

Every example is rendered on the fly from `np.random.default_rng([seed, split, index])`, so
any example can be read in any order (a grain random-access source) and the splits are
disjoint. Scenes have a Cityscapes-like layout: sky, a skyline of buildings, a road in
perspective with sidewalks on both sides, and objects standing on the ground (cars, people,
poles with traffic signs, vegetation).

Appearance alone does not decide every class, so that context has something to teach:
road and sidewalk draw their colours and textures from the same distribution (which one is
which follows from the layout: the road is the central trapezoid), buildings and cars share
colours and textures (cars are on the road and have wheels and windows), and poles share
their grey with the ground (they are thin and vertical). The layout stays simple enough for
a small CNN to learn it.
"""
import numpy as np
from PIL import Image

from flaseg.data import classes
from flaseg.errors import ConfigError

_SPLITS = {"train": 0, "val": 1, "test": 2}

ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR = range(9)

# Texture kinds, see `_texture`.
PLAIN, NOISY, HSTRIPES, VSTRIPES, GRID = range(5)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int = 8):
  """Low-frequency noise of std ~1: a coarse Gaussian grid upsampled bilinearly."""
  coarse = rng.standard_normal((height // cell + 2, width // cell + 2), dtype=np.float32)
  return np.asarray(Image.fromarray(coarse, mode="F").resize((width, height),
                                                            Image.BILINEAR)) * 1.5


def _grey(rng, lo=60.0, hi=170.0, tint=12.0):
  """A greyish RGB colour: a random brightness with a small random tint."""
  return rng.uniform(lo, hi) + rng.normal(0.0, tint, 3)


def _any_colour(rng):
  """Half of the time a grey, otherwise any colour (buildings and cars)."""
  if rng.random() < 0.5:
    return _grey(rng, 50.0, 200.0, 20.0)
  return rng.uniform(30.0, 220.0, 3)


def _texture(rng, kind, colour, yy, xx, hf, lf):
  """An (h, w, 3) float texture of base `colour` over pixel coordinates `yy` (h, 1), `xx`
  (1, w); `hf` and `lf` are the (h, w) high- and low-frequency noise under it."""
  colour = np.asarray(colour, np.float32)
  if kind == PLAIN:
    gain = 1.0 + rng.uniform(0.05, 0.2) * lf
  elif kind == NOISY:
    gain = 1.0 + rng.uniform(0.08, 0.25) * hf
  elif kind in (HSTRIPES, VSTRIPES):
    coord = yy if kind == HSTRIPES else xx
    period, phase = rng.uniform(3.0, 10.0), rng.uniform(0.0, 2 * np.pi)
    gain = 1.0 + rng.uniform(0.1, 0.3) * np.sign(np.sin(2 * np.pi * coord / period + phase))
    gain = gain + 0.05 * hf
  else:  # GRID: windows on a facade, tiles on a sidewalk.
    py, px = rng.uniform(4.0, 12.0, 2)
    oy, ox = rng.uniform(0.0, 12.0, 2)
    fill = rng.uniform(0.4, 0.9)
    cells = ((yy + oy) % py < fill * py) & ((xx + ox) % px < fill * px)
    other = rng.uniform(0.35, 0.7) if rng.random() < 0.7 else rng.uniform(1.3, 1.6)
    gain = np.where(cells, 1.0, other) + 0.05 * hf
  return gain[..., None] * colour


def _box(shape, top, bottom, left, right):
  """The clipped integer box (slices) covering [top, bottom) x [left, right) and the
  absolute pixel coordinates inside it, or None when it is empty."""
  t, b = max(int(np.floor(top)), 0), min(int(np.ceil(bottom)), shape[0])
  l, r = max(int(np.floor(left)), 0), min(int(np.ceil(right)), shape[1])
  if t >= b or l >= r:
    return None
  yy = np.arange(t, b, dtype=np.float32)[:, None]
  xx = np.arange(l, r, dtype=np.float32)[None, :]
  return (slice(t, b), slice(l, r)), yy, xx


def _paint(image, label, box, mask, cls, texture):
  """Paints `texture` and class `cls` where `mask` is set inside `box`."""
  np.copyto(image[box], texture, where=mask[..., None])
  label[box][mask] = cls


class _Scene:
  """Canvas and shared state (geometry, noise) while one scene is rendered."""

  def __init__(self, rng, height, width):
    self.rng, self.h, self.w = rng, height, width
    self.image = np.zeros((height, width, 3), np.float32)
    self.label = np.zeros((height, width), np.uint8)
    self.hf = rng.standard_normal((height, width), dtype=np.float32)
    self.lf = _smooth_noise(rng, height, width)
    # Perspective: ground rows go from depth 0 at the horizon to 1 at the bottom row, and
    # every ground edge is a line through the vanishing point (vx, horizon).
    self.horizon = height * rng.uniform(0.35, 0.55)
    self.vx = width * rng.uniform(0.3, 0.7)
    half = width * rng.uniform(0.25, 0.45)
    self.road_l = self.vx - half * rng.uniform(0.7, 1.3)
    self.road_r = self.vx + half * rng.uniform(0.7, 1.3)
    self.side_l = self.road_l - width * rng.uniform(0.2, 0.6)
    self.side_r = self.road_r + width * rng.uniform(0.2, 0.6)

  def row(self, depth):
    """The image row at ground depth `depth` (0: horizon, 1: bottom row)."""
    return self.horizon + depth * (self.h - self.horizon)

  def edge(self, bottom_x, depth):
    """x of the ground line through the vanishing point and (bottom_x, bottom row)."""
    return self.vx + depth * (bottom_x - self.vx)

  def texture(self, kinds, colour, box, yy, xx):
    kind = kinds[self.rng.integers(len(kinds))]
    return _texture(self.rng, kind, colour, yy, xx, self.hf[box], self.lf[box])

  def sidewalk_x(self, depth):
    """A random x on the left or right sidewalk at ground depth `depth`."""
    if self.rng.random() < 0.5:
      lo, hi = self.edge(self.side_l, depth), self.edge(self.road_l, depth)
    else:
      lo, hi = self.edge(self.road_r, depth), self.edge(self.side_r, depth)
    return self.rng.uniform(lo, hi)

  def road_x(self, depth, margin=0.0):
    lo, hi = self.edge(self.road_l, depth) + margin, self.edge(self.road_r, depth) - margin
    return self.rng.uniform(lo, hi) if lo < hi else 0.5 * (lo + hi)

  # Background: sky, buildings, road, sidewalks.

  def background(self):
    rng, h, w = self.rng, self.h, self.w
    full = (slice(None), slice(None))
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    depth = (yy - self.horizon) / (h - self.horizon)
    below = yy >= self.horizon
    road = below & (xx >= self.edge(self.road_l, depth)) & (xx <= self.edge(self.road_r, depth))
    ground = below & (xx >= self.edge(self.side_l, depth)) & (xx <= self.edge(self.side_r, depth))
    sidewalk = ground & ~road

    # Skyline: buildings of random widths and heights; above them is sky.
    cuts = np.cumsum(w * rng.uniform(0.08, 0.3, 16))
    cuts = np.concatenate([[0], np.round(cuts[cuts < w]).astype(int), [w]])
    tops = self.horizon - h * rng.uniform(0.05, 0.45, len(cuts) - 1)
    top = np.repeat(tops, np.diff(cuts))[None, :]
    sky = yy < top

    # Sky: a vertical gradient from blue (or overcast grey) to a lighter horizon, clouds.
    if rng.random() < 0.7:
      zenith = np.array([rng.uniform(60, 150), rng.uniform(110, 190), rng.uniform(180, 255)])
    else:
      zenith = _grey(rng, 150, 220, 8)
    haze = zenith + (255 - zenith) * rng.uniform(0.2, 0.6)
    t = np.clip(yy / self.horizon, 0.0, 1.0)[..., None]
    sky_tex = (1 - t) * zenith + t * haze + rng.uniform(0, 25) * np.maximum(self.lf, 0)[..., None]
    _paint(self.image, self.label, full, np.broadcast_to(sky, (h, w)), SKY, sky_tex)

    # Buildings: everything that is neither sky nor ground, one facade per skyline segment.
    building = ~sky & ~ground
    for left, right in zip(cuts[:-1], cuts[1:]):
      if left == right:
        continue
      box, byy, bxx = _box((h, w), 0, h, left, right)
      tex = self.texture((PLAIN, NOISY, HSTRIPES, VSTRIPES, GRID, GRID), _any_colour(rng),
                         box, byy, bxx)
      _paint(self.image, self.label, box, building[box], BUILDING, tex)

    # Road and sidewalks: same colour and texture distributions, told apart by layout.
    for mask, cls in ((road, ROAD), (sidewalk, SIDEWALK)):
      tex = self.texture((PLAIN, NOISY, HSTRIPES, GRID), _grey(rng), full, yy, xx)
      _paint(self.image, self.label, full, mask, cls, tex)

    # Dashed lane marking along the road's centre line (still labelled road).
    if rng.random() < 0.6:
      centre = self.edge(0.5 * (self.road_l + self.road_r), depth)
      width = 0.5 + depth * w * rng.uniform(0.01, 0.02)
      dashes = (rng.uniform(0.5, 2.0) / np.maximum(depth, 0.02)) % 1.0 < 0.5
      mask = road & (np.abs(xx - centre) < width) & dashes
      paint = rng.uniform(200, 255) * np.array([1.0, 1.0, rng.choice([1.0, 0.4])])
      _paint(self.image, self.label, full, mask, ROAD, paint)

  # Objects, each painted by a function of its ground depth.

  def car(self, depth):
    rng = self.rng
    cw = depth * self.w * rng.uniform(0.18, 0.3)
    ch = cw * rng.uniform(0.5, 0.75)
    base, cx = self.row(depth), self.road_x(depth, 0.3 * cw)
    region = _box(self.image.shape[:2], base - ch, base, cx - cw / 2, cx + cw / 2)
    if region is None:
      return
    box, yy, xx = region
    # Body in the lower 60 %, a narrower cabin with a window band above it.
    u = (yy - (base - ch)) / ch
    inset = np.where(u < 0.4, 0.18 * cw, 0.0)
    body = np.abs(xx - cx) <= cw / 2 - inset
    tex = self.texture((PLAIN, NOISY, HSTRIPES, VSTRIPES, GRID), _any_colour(rng), box, yy, xx)
    window = (u > 0.08) & (u < 0.36)
    tex = np.where(window[..., None], tex * rng.uniform(0.3, 0.6), tex)
    wheels = np.zeros_like(body)
    r = 0.17 * ch
    for wx in (cx - cw / 2 + 1.6 * r, cx + cw / 2 - 1.6 * r):
      wheels |= (yy - (base - r)) ** 2 + (xx - wx) ** 2 <= r ** 2
    tex = np.where(wheels[..., None], rng.uniform(10, 40), tex)
    _paint(self.image, self.label, box, body | wheels, CAR, tex)

  def person(self, depth):
    rng = self.rng
    ph = depth * self.h * rng.uniform(0.3, 0.45)
    pw = ph * rng.uniform(0.22, 0.35)
    base = self.row(depth)
    cx = self.sidewalk_x(depth) if rng.random() < 0.75 else self.road_x(depth)
    region = _box(self.image.shape[:2], base - ph, base, cx - pw / 2, cx + pw / 2)
    if region is None:
      return
    box, yy, xx = region
    body_cy, head_cy, head_r = base - 0.42 * ph, base - 0.88 * ph, 0.11 * ph
    body = ((yy - body_cy) / (0.42 * ph)) ** 2 + ((xx - cx) / (pw / 2)) ** 2 <= 1.0
    head = (yy - head_cy) ** 2 + (xx - cx) ** 2 <= head_r ** 2
    skin = np.array([rng.uniform(90, 240), 0, 0])
    skin[1:] = skin[0] * rng.uniform(0.6, 0.8), skin[0] * rng.uniform(0.45, 0.65)
    tex = self.texture((PLAIN, NOISY, HSTRIPES), rng.uniform(20, 230, 3), box, yy, xx)
    tex = np.where(head[..., None], skin, tex)
    _paint(self.image, self.label, box, body | head, PERSON, tex)

  def pole(self, depth):
    rng = self.rng
    width = int(np.clip(np.round(1 + 2 * depth + rng.uniform(-0.5, 0.5)), 1, 3))
    height = depth * self.h * rng.uniform(0.8, 1.3)
    base, x0 = self.row(depth), np.floor(self.sidewalk_x(depth))
    region = _box(self.image.shape[:2], base - height, base, x0, x0 + width)
    if region is None:
      return
    box, yy, xx = region
    tex = self.texture((PLAIN, NOISY), _grey(rng, 40, 170), box, yy, xx)
    _paint(self.image, self.label, box, np.ones(tex.shape[:2], bool), POLE, tex)
    if rng.random() < 0.6:  # A traffic sign near the top of the pole.
      size = max(3.0, depth * self.h * rng.uniform(0.1, 0.18))
      cy, cx = base - height + 0.8 * size, x0 + width / 2
      region = _box(self.image.shape[:2], cy - size / 2, cy + size / 2, cx - size / 2,
                    cx + size / 2)
      if region is None:
        return
      box, yy, xx = region
      if rng.random() < 0.5:
        mask = np.ones((yy.shape[0], xx.shape[1]), bool)
      else:
        mask = (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 <= (size / 2) ** 2
      colours = ((220, 30, 30), (30, 60, 200), (240, 200, 20), (235, 235, 235))
      colour = np.array(colours[rng.integers(len(colours))]) + rng.normal(0, 15, 3)
      tex = self.texture((PLAIN,), colour, box, yy, xx)
      _paint(self.image, self.label, box, mask, SIGN, tex)

  def vegetation(self, depth):
    rng = self.rng
    radius = self.h * rng.uniform(0.06, 0.16)
    cy, cx = self.row(depth), rng.uniform(0, self.w)
    centres = np.array([cy, cx]) + rng.normal(0, 0.6 * radius, (rng.integers(3, 8), 2))
    radii = radius * rng.uniform(0.4, 0.8, len(centres))
    lo, hi = centres - radii[:, None], centres + radii[:, None]
    region = _box(self.image.shape[:2], lo[:, 0].min(), hi[:, 0].max() + 1, lo[:, 1].min(),
                  hi[:, 1].max() + 1)
    if region is None:
      return
    box, yy, xx = region
    mask = np.zeros((yy.shape[0], xx.shape[1]), bool)
    for (y, x), r in zip(centres, radii):
      mask |= (yy - y) ** 2 + (xx - x) ** 2 <= r ** 2
    colour = np.array([rng.uniform(20, 110), rng.uniform(70, 180), rng.uniform(20, 90)])
    tex = self.texture((NOISY, NOISY, PLAIN), colour, box, yy, xx)
    _paint(self.image, self.label, box, mask, VEGETATION, tex)

  def render(self):
    """Renders the scene; returns (uint8 (H, W, 3) image, uint8 (H, W) label)."""
    rng = self.rng
    self.background()
    # Objects stand on the ground: paint them far to near (by depth) so near ones occlude.
    objects = ([(rng.uniform(-0.3, 0.3), self.vegetation) for _ in range(rng.integers(0, 4))]
               + [(rng.uniform(0.15, 1.0), self.pole) for _ in range(rng.integers(0, 4))]
               + [(rng.uniform(0.15, 1.05), self.car) for _ in range(rng.integers(0, 5))]
               + [(rng.uniform(0.1, 1.0), self.person) for _ in range(rng.integers(0, 5))])
    for depth, draw in sorted(objects, key=lambda o: o[0]):
      draw(depth)
    # Global illumination, white balance and sensor noise.
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.9, 1.1, 3)
    noise = rng.uniform(2.0, 8.0) * rng.standard_normal((self.h, self.w, 1), dtype=np.float32)
    image = np.clip(self.image * gain.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return image, self.label


class SyntheticScenes:
  """Synthetic street scenes as a grain random-access source (`__len__`, `__getitem__`).

  Example `i` of a split is a pure function of (seed, split, i); train, val and test use
  different random streams, so they are disjoint. Every pixel has a class; `ignore_label`
  (an int in 9..255) is what the pipelines pad with.
  """
  class_names = ("road", "sidewalk", "building", "pole", "traffic_sign", "vegetation",
                 "sky", "person", "car")
  num_classes = len(class_names)
  # Cityscapes colours of the same classes, to colour labels and predictions.
  palette = np.array([(128, 64, 128), (244, 35, 232), (70, 70, 70), (153, 153, 153),
                      (220, 220, 0), (107, 142, 35), (70, 130, 180), (220, 20, 60),
                      (0, 0, 142)], np.uint8)

  def __init__(self, split: str = "train", num_examples: int = 512, height: int = 96,
               width: int = 128, seed: int = 0, ignore_label: int = classes.IGNORE_LABEL):
    if split not in _SPLITS:
      raise ConfigError(f"Unknown split {split!r}, expected one of {tuple(_SPLITS)}.")
    self.split, self.num_examples = split, num_examples
    self.height, self.width, self.seed = height, width, seed
    self.ignore_label = classes.check_ignore_label(ignore_label, self.num_classes, "synthetic")

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if index < 0:
      index += self.num_examples
    if not 0 <= index < self.num_examples:
      raise IndexError(f"Index {index} out of range for {self.num_examples} examples.")
    rng = np.random.default_rng([self.seed, _SPLITS[self.split], index])
    image, label = _Scene(rng, self.height, self.width).render()
    return {"image": image, "label": label, "name": f"synthetic_{self.split}_{index:06d}"}

  def __repr__(self) -> str:
    return (f"SyntheticScenes(split={self.split!r}, num_examples={self.num_examples}, "
            f"height={self.height}, width={self.width}, seed={self.seed})")
