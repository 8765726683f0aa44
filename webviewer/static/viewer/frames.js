/*
 * Frame decoding (pure, no DOM): a frame response's raw samples and X- headers become a
 * frame object with typed-array pixels, rescale, photometric, pixel spacing and the
 * window to show it with (the header's, or the one spanning its values).
 */

export const FORMATS = {
  uint8: { Type: Uint8Array, channels: 1 },
  int8: { Type: Int8Array, channels: 1 },
  uint16: { Type: Uint16Array, channels: 1 },
  int16: { Type: Int16Array, channels: 1 },
  float32: { Type: Float32Array, channels: 1 },
  rgb8: { Type: Uint8Array, channels: 3 },
};

/** The number in `text`, or `fallback` when there is none. */
export function number(text, fallback) {
  const value = Number.parseFloat(text ?? "");
  return Number.isFinite(value) ? value : fallback;
}

/** A frame's samples and display attributes, from a frame response. */
export function decodeFrame(headers, buffer) {
  const format = headers.get("X-Sample-Format");
  const layout = FORMATS[format];
  if (!layout) throw new Error(`Unsupported sample format: ${format}.`);
  const rows = number(headers.get("X-Rows"), 0);
  const cols = number(headers.get("X-Columns"), 0);
  const expected = rows * cols * layout.channels * layout.Type.BYTES_PER_ELEMENT;
  if (!rows || !cols || buffer.byteLength !== expected) throw new Error("An image arrived incomplete.");
  const frame = {
    pixels: new layout.Type(buffer),
    format,
    rows,
    cols,
    slope: number(headers.get("X-Rescale-Slope"), 1) || 1,
    intercept: number(headers.get("X-Rescale-Intercept"), 0),
    photometric: headers.get("X-Photometric") || "MONOCHROME2",
    spacing: parseSpacing(headers.get("X-Pixel-Spacing")),
    frameTimeMs: number(headers.get("X-Frame-Time-Ms"), null),
    window: null,
    position: 0,
  };
  if (format !== "rgb8") {
    frame.window = headerWindow(headers) ?? rangeWindow(frame);
  }
  return frame;
}

/** Pixel Spacing ("row\col", in mm), or null unless both are positive. */
export function parseSpacing(text) {
  const [row, col] = (text ?? "").split("\\").map((part) => number(part, 0));
  return row > 0 && col > 0 ? { row, col } : null;
}

function headerWindow(headers) {
  const center = number(headers.get("X-Window-Center"), null);
  const width = number(headers.get("X-Window-Width"), null);
  return center !== null && width > 0 ? { center, width } : null;
}

/** The window that spans the frame's rescaled minimum to maximum. */
export function rangeWindow(frame) {
  let lo = Infinity;
  let hi = -Infinity;
  const px = frame.pixels;
  for (let i = 0; i < px.length; i += 1) {
    if (px[i] < lo) lo = px[i];
    if (px[i] > hi) hi = px[i];
  }
  if (lo > hi) lo = hi = 0;
  const a = lo * frame.slope + frame.intercept;
  const b = hi * frame.slope + frame.intercept;
  const [min, max] = a <= b ? [a, b] : [b, a];
  if (frame.format === "float32") return { center: (min + max) / 2, width: Math.max(max - min, 1e-6) };
  return { center: (min + max) / 2 + 0.5, width: max - min + 1 };
}

/** Displayed height / width of one pixel. */
export function aspect(frame) {
  return frame.spacing ? frame.spacing.row / frame.spacing.col : 1;
}
