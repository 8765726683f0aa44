/*
 * Geometry (pure, no DOM): where a frame lies in the viewport for a view
 * ({ scale, ox, oy, fitted, width, height, dpr }), screen <-> image coordinates,
 * fitting and zooming about a point (lengths and angles are measure.js's).
 */
import { aspect } from "./frames.js";

export const MIN_SCALE = 0.05;
export const MAX_SCALE = 50;

/** Where the image lies in the viewport, in CSS pixels. */
export function imageBox(view, frame) {
  const w = frame.cols * view.scale;
  const h = frame.rows * aspect(frame) * view.scale;
  return { x: view.width / 2 + view.ox - w / 2, y: view.height / 2 + view.oy - h / 2, w, h };
}

/** A viewport point in image pixel coordinates. */
export function toImage(view, frame, point) {
  const box = imageBox(view, frame);
  return { x: ((point.x - box.x) / box.w) * frame.cols, y: ((point.y - box.y) / box.h) * frame.rows };
}

/** An image point in viewport (CSS pixel) coordinates. */
export function toScreen(view, frame, point) {
  const box = imageBox(view, frame);
  return { x: box.x + (point.x / frame.cols) * box.w, y: box.y + (point.y / frame.rows) * box.h };
}

/** Scale the whole frame into the viewport, centred. */
export function fitView(view, frame) {
  view.scale = Math.min(view.width / frame.cols, view.height / (frame.rows * aspect(frame)));
  view.ox = 0;
  view.oy = 0;
}

/** Zoom by `factor` (within the scale limits), keeping the image point under `point` in place. */
export function zoomView(view, frame, point, factor) {
  const anchor = toImage(view, frame, point);
  view.scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.scale * factor));
  const moved = toScreen(view, frame, anchor);
  view.ox += point.x - moved.x;
  view.oy += point.y - moved.y;
  view.fitted = false;
}
