/*
 * Measurements (pure, no DOM): lengths and angles in mm (pixels without a spacing), the
 * statistics of an ellipse or rectangle ROI in modality values (stored x slope +
 * intercept: HU on CT), the value under a point, an automatic window from a frame's
 * histogram, and the labels shown for each.
 *
 * A pixel belongs to an ROI when its centre (x + 0.5, y + 0.5) lies inside the shape;
 * the SD is the population SD (over the n pixels, not n - 1).
 */

const unitOf = (spacing) => (spacing ? "mm" : "px");

/** Image point `p` in mm (or pixels without a spacing). */
function scaled(p, spacing) {
  return spacing ? { x: p.x * spacing.col, y: p.y * spacing.row } : { x: p.x, y: p.y };
}

/** The length of the segment from `a` to `b` (image points). */
export function segmentLength(a, b, spacing) {
  const p = scaled(a, spacing);
  const q = scaled(b, spacing);
  return Math.hypot(q.x - p.x, q.y - p.y);
}

/** The angle at `vertex` between the arms to `a` and `c`, in degrees (in physical space). */
export function angleAt(a, vertex, c, spacing) {
  const v = scaled(vertex, spacing);
  const p = scaled(a, spacing);
  const q = scaled(c, spacing);
  const u = [p.x - v.x, p.y - v.y];
  const w = [q.x - v.x, q.y - v.y];
  const norms = Math.hypot(...u) * Math.hypot(...w);
  if (norms === 0) return 0;
  const cos = Math.min(1, Math.max(-1, (u[0] * w[0] + u[1] * w[1]) / norms));
  return (Math.acos(cos) * 180) / Math.PI;
}

/** The modality value of sample `i` of a grayscale frame. */
export function modalityValue(frame, i) {
  return frame.pixels[i] * frame.slope + frame.intercept;
}

/** The pixel under image point `p` and its value (modality value, or [r, g, b]); null outside. */
export function probe(frame, p) {
  const x = Math.floor(p.x);
  const y = Math.floor(p.y);
  if (x < 0 || y < 0 || x >= frame.cols || y >= frame.rows) return null;
  const i = y * frame.cols + x;
  if (frame.format === "rgb8") return { x, y, value: Array.from(frame.pixels.subarray(3 * i, 3 * i + 3)) };
  return { x, y, value: modalityValue(frame, i) };
}

/** The bounding box of the drag from `a` to `b`: centre and semi-axes. */
export function box(a, b) {
  return {
    cx: (a.x + b.x) / 2,
    cy: (a.y + b.y) / 2,
    rx: Math.abs(b.x - a.x) / 2,
    ry: Math.abs(b.y - a.y) / 2,
  };
}

/** Whether the pixel centre (px, py) is inside the ROI `kind` ("ellipse" | "rect") of box `b`. */
export function insideRoi(kind, b, px, py) {
  const dx = px - b.cx;
  const dy = py - b.cy;
  if (kind === "rect") return Math.abs(dx) <= b.rx && Math.abs(dy) <= b.ry;
  if (b.rx === 0 || b.ry === 0) return false;
  return (dx / b.rx) ** 2 + (dy / b.ry) ** 2 <= 1;
}

/** The ROI's area (mm², px² without a spacing): the shape's, not its pixels'. */
export function roiArea(kind, b, spacing) {
  const cell = spacing ? spacing.row * spacing.col : 1;
  const shape = kind === "rect" ? 4 * b.rx * b.ry : Math.PI * b.rx * b.ry;
  return shape * cell;
}

/**
 * The statistics of the ROI `kind` dragged from `a` to `b` on `frame`:
 * { n, mean, sd, min, max, area } (values null for colour frames or an empty ROI).
 */
export function roiStats(frame, kind, a, b) {
  const shape = box(a, b);
  const area = roiArea(kind, shape, frame.spacing);
  const empty = { n: 0, mean: null, sd: null, min: null, max: null, area };
  if (frame.format === "rgb8") return empty;
  const y0 = Math.max(0, Math.floor(shape.cy - shape.ry));
  const y1 = Math.min(frame.rows - 1, Math.ceil(shape.cy + shape.ry));
  const x0 = Math.max(0, Math.floor(shape.cx - shape.rx));
  const x1 = Math.min(frame.cols - 1, Math.ceil(shape.cx + shape.rx));
  let n = 0;
  let sum = 0;
  let squares = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let y = y0; y <= y1; y += 1) {
    for (let x = x0; x <= x1; x += 1) {
      if (!insideRoi(kind, shape, x + 0.5, y + 0.5)) continue;
      const value = modalityValue(frame, y * frame.cols + x);
      n += 1;
      sum += value;
      squares += value * value;
      if (value < min) min = value;
      if (value > max) max = value;
    }
  }
  if (n === 0) return empty;
  const mean = sum / n;
  return { n, mean, sd: Math.sqrt(Math.max(0, squares / n - mean * mean)), min, max, area };
}

/** A number as labels show it: one decimal, or none from 1000 up. */
export function fixed(value) {
  return Math.abs(value) >= 1000 ? String(Math.round(value)) : value.toFixed(1);
}

/** The label lines of annotation `note` ({ kind, points, stats }) measured with `spacing`. */
export function labelLines(note, spacing, valueUnit) {
  const [a, b, c] = note.points;
  const suffix = valueUnit ? ` ${valueUnit}` : "";
  if (note.kind === "length") return [`${fixed(segmentLength(a, b, spacing))} ${unitOf(spacing)}`];
  if (note.kind === "angle") return c ? [`${angleAt(a, b, c, spacing).toFixed(1)}°`] : [];
  if (note.kind === "probe") return note.value === null ? [] : [valueText(note.value) + suffix];
  const s = note.stats;
  if (!s) return [];
  const area = `Area ${fixed(s.area)} ${unitOf(spacing)}²`;
  if (s.mean === null) return [area];
  return [
    `Mean ${fixed(s.mean)}${suffix} SD ${fixed(s.sd)}`,
    `Min ${fixed(s.min)} Max ${fixed(s.max)}`,
    area,
  ];
}

/** A probed value: a number to one decimal (whole for integers), or "R G B". */
export function valueText(value) {
  if (Array.isArray(value)) return `RGB ${value.join(" ")}`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/**
 * A window from the histogram of a grayscale frame's modality values: from the 1st to the
 * 99th percentile (every value when they are few); null for colour frames.
 */
export function histogramWindow(frame) {
  if (frame.format === "rgb8" || frame.pixels.length === 0) return null;
  const step = Math.max(1, Math.floor(frame.pixels.length / 65536));
  const values = [];
  for (let i = 0; i < frame.pixels.length; i += step) values.push(modalityValue(frame, i));
  values.sort((p, q) => p - q);
  const at = (f) => values[Math.min(values.length - 1, Math.floor(f * values.length))];
  const low = at(0.01);
  const high = at(0.99);
  const width = Math.max(high - low, frame.format === "float32" ? 1e-6 : 1);
  return { center: (low + high) / 2, width };
}
