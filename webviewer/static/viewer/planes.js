/*
 * Image planes in patient space (pure, no DOM): a slice's plane from its frame's Image
 * Position and Orientation (Patient), image <-> patient coordinates, which slice of a
 * series lies nearest another slice (linked scrolling, by position along the normal),
 * the reference line where one plane cuts another, and the orientation letters
 * (L/R, A/P, H/F) of the image's edges.
 *
 * Image coordinates are the viewer's: pixel (0, 0) covers [0, 1) x [0, 1), so the
 * centre of the first pixel, which Image Position (Patient) locates, is (0.5, 0.5).
 */

const PARALLEL = 0.99; // |cos| between normals above which planes count as parallel (about 8°)
const LETTER_MIN = 0.25; // a direction cosine below this adds no letter

export const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

function unit(v) {
  const length = Math.hypot(v[0], v[1], v[2]);
  return length > 0 ? [v[0] / length, v[1] / length, v[2] / length] : null;
}

const finite = (values, n) => Array.isArray(values) && values.length === n && values.every(Number.isFinite);

/** The plane of `frame` (its position, orientation, size and spacing), or null without them. */
export function planeOf(frame) {
  if (!frame || !finite(frame.imagePosition, 3) || !finite(frame.orientation, 6)) return null;
  const row = unit(frame.orientation.slice(0, 3));
  const col = unit(frame.orientation.slice(3, 6));
  const normal = row && col ? unit(cross(row, col)) : null;
  if (!normal) return null;
  return {
    origin: frame.imagePosition.slice(),
    row,
    col,
    normal,
    rows: frame.rows,
    cols: frame.cols,
    spacing: frame.spacing ?? { row: 1, col: 1 },
    frameOfReference: frame.frameOfReference ?? null,
  };
}

/** The patient-space point (mm) of image point `p`. */
export function toPatient(plane, p) {
  const u = (p.x - 0.5) * plane.spacing.col;
  const v = (p.y - 0.5) * plane.spacing.row;
  return [0, 1, 2].map((k) => plane.origin[k] + u * plane.row[k] + v * plane.col[k]);
}

/** The image point of patient point `q` projected onto the plane. */
export function fromPatient(plane, q) {
  const d = sub(q, plane.origin);
  return { x: dot(d, plane.row) / plane.spacing.col + 0.5, y: dot(d, plane.col) / plane.spacing.row + 0.5 };
}

/** Whether two planes share a frame of reference (a known one). */
export function sameFrame(a, b) {
  return Boolean(a && b && a.frameOfReference && a.frameOfReference === b.frameOfReference);
}

/** Whether the planes are parallel (within about 8°). */
export function parallel(a, b) {
  return Math.abs(dot(a.normal, b.normal)) >= PARALLEL;
}

/** The centre of the image of `plane`, in patient space. */
export function centreOf(plane) {
  return toPatient(plane, { x: plane.cols / 2, y: plane.rows / 2 });
}

/**
 * The index of the plane in `planes` (an array with nulls for slices not yet known) that
 * lies nearest the centre of `source`, measured along each plane's normal; null when none
 * is known.
 */
export function nearestSlice(source, planes) {
  const centre = centreOf(source);
  let best = null;
  let distance = Infinity;
  planes.forEach((plane, index) => {
    if (!plane) return;
    const d = Math.abs(dot(plane.normal, sub(centre, plane.origin)));
    if (d < distance) {
      distance = d;
      best = index;
    }
  });
  return best;
}

/**
 * Where the plane of `source` cuts the image of `target`: { from, to } in the target's
 * image coordinates, clipped to both images; null for parallel planes, other frames of
 * reference, or no intersection.
 */
export function referenceLine(source, target) {
  if (!sameFrame(source, target) || parallel(source, target)) return null;
  const level = (p) => dot(source.normal, sub(toPatient(target, p), source.origin));
  const f0 = level({ x: 0, y: 0 });
  const fx = level({ x: 1, y: 0 }) - f0;
  const fy = level({ x: 0, y: 1 }) - f0;
  const ends = edgeCrossings(f0, fx, fy, target.cols, target.rows);
  if (ends.length < 2) return null;
  return clipToSource(ends[0], ends[1], source, target);
}

/** The points of the rectangle [0, w] x [0, h] where f0 + fx x + fy y = 0 (at most two). */
function edgeCrossings(f0, fx, fy, w, h) {
  const points = [];
  const add = (x, y) => {
    if (x < -1e-9 || x > w + 1e-9 || y < -1e-9 || y > h + 1e-9) return;
    if (points.some((p) => Math.hypot(p.x - x, p.y - y) < 1e-6)) return;
    points.push({ x, y });
  };
  if (Math.abs(fy) > 1e-12) {
    for (const x of [0, w]) add(x, -(f0 + fx * x) / fy);
  }
  if (Math.abs(fx) > 1e-12) {
    for (const y of [0, h]) add(-(f0 + fy * y) / fx, y);
  }
  return points.slice(0, 2);
}

/** The part of segment a-b (target image points) that lies over the source image (Liang-Barsky). */
function clipToSource(a, b, source, target) {
  const sa = fromPatient(source, toPatient(target, a));
  const sb = fromPatient(source, toPatient(target, b));
  let t0 = 0;
  let t1 = 1;
  const d = { x: sb.x - sa.x, y: sb.y - sa.y };
  const limits = [
    [-d.x, sa.x],
    [d.x, source.cols - sa.x],
    [-d.y, sa.y],
    [d.y, source.rows - sa.y],
  ];
  for (const [p, q] of limits) {
    if (Math.abs(p) < 1e-12) {
      if (q < 0) return null;
    } else if (p < 0) {
      t0 = Math.max(t0, q / p);
    } else {
      t1 = Math.min(t1, q / p);
    }
  }
  if (t0 >= t1) return null;
  const at = (t) => ({ x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t });
  return { from: at(t0), to: at(t1) };
}

/** The letters of a patient-space direction: "L", "RA", "FPL"... (strongest first). */
export function directionLetters(v) {
  return [
    [v[0], "L", "R"],
    [v[1], "P", "A"],
    [v[2], "H", "F"],
  ]
    .filter(([c]) => Math.abs(c) >= LETTER_MIN)
    .sort((p, q) => Math.abs(q[0]) - Math.abs(p[0]))
    .map(([c, plus, minus]) => (c > 0 ? plus : minus))
    .join("");
}

/** The letters at the image's edges { left, right, top, bottom } from its orientation, or null. */
export function edgeLetters(orientation) {
  if (!finite(orientation, 6)) return null;
  const row = orientation.slice(0, 3);
  const col = orientation.slice(3, 6);
  const negate = (v) => v.map((c) => -c);
  return {
    right: directionLetters(row),
    left: directionLetters(negate(row)),
    bottom: directionLetters(col),
    top: directionLetters(negate(col)),
  };
}
