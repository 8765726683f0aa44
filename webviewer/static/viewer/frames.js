/*
 * Frame decoding (pure, no DOM): a frame response's raw samples and X- headers (as
 * webviewer/pixels.py's Frame.headers() sends them) become a frame object: typed-array
 * pixels, rescale, photometric, pixel spacing, the frame's geometry, the dataset's windows
 * and VOI LUTs (frame.windows), the window to show it with (frame.window: the dataset's
 * first, else autoWindow's from the histogram), the Presentation LUT Shape's polarity
 * (frame.inverse), the padding value and the overlay planes.
 */

export const FORMATS = {
  uint8: { Type: Uint8Array, channels: 1 },
  int8: { Type: Int8Array, channels: 1 },
  uint16: { Type: Uint16Array, channels: 1 },
  int16: { Type: Int16Array, channels: 1 },
  float32: { Type: Float32Array, channels: 1 },
  rgb8: { Type: Uint8Array, channels: 3 },
};

const VOI_FUNCTIONS = ["LINEAR", "LINEAR_EXACT", "SIGMOID"];

/** The number in `text`, or `fallback` when there is none. */
export function number(text, fallback) {
  const value = Number.parseFloat(text ?? "");
  return Number.isFinite(value) ? value : fallback;
}

/** The numbers of a backslash-separated header ("1\2\3"), or null unless there are `count`. */
export function numbers(text, count) {
  if (!text) return null;
  const parts = text.split("\\").map((part) => number(part, null));
  return parts.length === count && parts.every((v) => v !== null) ? parts : null;
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
  const photometric = headers.get("X-Photometric") || "MONOCHROME2";
  const shape = headers.get("X-Presentation-Lut-Shape");
  const frame = {
    pixels: new layout.Type(buffer),
    format,
    rows,
    cols,
    slope: number(headers.get("X-Rescale-Slope"), 1) || 1,
    intercept: number(headers.get("X-Rescale-Intercept"), 0),
    photometric,
    // dcmtk's rule: a Presentation LUT Shape decides the polarity; without one, MONOCHROME1 is inverted.
    inverse: shape === "INVERSE" || (shape !== "IDENTITY" && photometric === "MONOCHROME1"),
    voiFunction: VOI_FUNCTIONS.includes(headers.get("X-Voi-Lut-Function")) ? headers.get("X-Voi-Lut-Function") : "LINEAR",
    padding: parsePadding(headers.get("X-Pixel-Padding")),
    spacing: parseSpacing(headers.get("X-Pixel-Spacing")),
    frameTimeMs: number(headers.get("X-Frame-Time-Ms"), null),
    imagePosition: numbers(headers.get("X-Image-Position-Patient"), 3),
    orientation: numbers(headers.get("X-Image-Orientation-Patient"), 6),
    thickness: number(headers.get("X-Slice-Thickness"), null),
    sliceLocation: number(headers.get("X-Slice-Location"), null),
    frameOfReference: headers.get("X-Frame-Of-Reference-UID") || null,
    overlays: headers.get("X-Preview-Of") ? [] : parseOverlays(headers.get("X-Overlays")),
    windows: [],
    window: null,
    position: 0,
  };
  if (format !== "rgb8") {
    frame.windows = [...parseVoiLuts(headers.get("X-Voi-Luts")), ...headerWindows(headers)];
    frame.window = frame.windows[0] ?? autoWindow(frame) ?? rangeWindow(frame);
  }
  return frame;
}

/** Pixel Spacing ("row\col", in mm), or null unless both are positive. */
export function parseSpacing(text) {
  const [row, col] = (text ?? "").split("\\").map((part) => number(part, 0));
  return row > 0 && col > 0 ? { row, col } : null;
}

/** The padding ("value" or "value\limit", stored values) as { low, high }, or null. */
export function parsePadding(text) {
  const values = (text ?? "").split("\\").map((part) => number(part, null)).filter((v) => v !== null);
  if (values.length === 0) return null;
  const [a, b = a] = values;
  return { low: Math.min(a, b), high: Math.max(a, b) };
}

function decoded(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The dataset's windows, [{ center, width, explanation }], from the multi-valued headers. */
export function headerWindows(headers) {
  const centers = (headers.get("X-Window-Center") ?? "").split("\\").map((v) => number(v, null));
  const widths = (headers.get("X-Window-Width") ?? "").split("\\").map((v) => number(v, null));
  const explanations = (headers.get("X-Window-Explanation") ?? "").split("\\").map(decoded);
  const windows = [];
  centers.forEach((center, i) => {
    const width = widths[i];
    if (center !== null && width !== null && width > 0) {
      windows.push({ center, width, explanation: explanations[i] ?? "" });
    }
  });
  return windows;
}

function base64Words(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const words = new Uint16Array(bytes.length >> 1);
  for (let i = 0; i < words.length; i += 1) words[i] = bytes[2 * i] | (bytes[2 * i + 1] << 8);
  return words;
}

/** The JSON array a header holds, or [] when it holds none or something else. */
function jsonList(text) {
  try {
    const listed = JSON.parse(text || "[]");
    return Array.isArray(listed) ? listed : [];
  } catch {
    return [];
  }
}

/**
 * The VOI LUTs as windows: { center, width, explanation, lut: { first, step, bits, data, key } }.
 * center and width are the window over the table's input range; windowing.js paints a
 * window that is exactly a table's through the table.
 */
export function parseVoiLuts(text) {
  return jsonList(text).flatMap((item, i) => {
    const data = typeof item?.data === "string" ? base64Words(item.data) : null;
    const step = Math.max(1, Math.trunc(item?.step) || 1);
    if (!data?.length || !Number.isFinite(item.first) || !(item.bits >= 8 && item.bits <= 16)) return [];
    const last = item.first + (data.length - 1) * step;
    const lut = { first: item.first, step, bits: item.bits, data, key: lutKey(item.first, step, item.bits, data) };
    const explanation = String(item.explanation ?? "") || `VOI LUT ${i + 1}`;
    return [{ center: (item.first + last) / 2 + 0.5, width: last - item.first + 1, explanation, lut }];
  });
}

function lutKey(first, step, bits, data) {
  let hash = 2166136261;
  for (let i = 0; i < data.length; i += 1) hash = Math.imul(hash ^ data[i], 16777619) >>> 0;
  return `${first}/${step}/${bits}/${data.length}/${hash}`;
}

/** The overlay planes: [{ rows, cols, top, left, type, label, bits: Uint8Array of 0/1 }]. */
export function parseOverlays(text) {
  return jsonList(text).flatMap((item) => {
    const rows = Math.trunc(item?.rows);
    const cols = Math.trunc(item?.columns);
    if (!(rows > 0 && cols > 0) || typeof item.runs !== "string") return [];
    const bits = unrun(item.runs, rows * cols);
    if (!bits) return [];
    const [row, col] = Array.isArray(item.origin) ? item.origin : [1, 1];
    const label = String(item.label ?? "");
    return [{ rows, cols, top: (Math.trunc(row) || 1) - 1, left: (Math.trunc(col) || 1) - 1, type: item.type, label, bits }];
  });
}

/** Run lengths (alternately 0s and 1s, starting with 0s) as `size` 0/1 values, or null if they do not fit. */
export function unrun(runs, size) {
  const bits = new Uint8Array(size);
  let at = 0;
  let value = 0;
  for (const part of runs ? runs.split(",") : []) {
    const length = Number(part);
    if (!Number.isInteger(length) || length < 0 || at + length > size) return null;
    if (value) bits.fill(1, at, at + length);
    at += length;
    value ^= 1;
  }
  return bits;
}

/** Whether stored value `v` is padding. */
function isPadding(padding, v) {
  return padding !== null && v >= padding.low && v <= padding.high;
}

/**
 * A window from the histogram: the 1st to 99th percentile of the frame's modality values,
 * padding left out (the whole range of the others when those two are equal); null for a
 * colour frame or one that is all padding.
 */
export function autoWindow(frame) {
  if (frame.format === "rgb8") return null;
  const padding = frame.padding ?? null;
  const range = frame.format === "float32" ? floatPercentiles(frame.pixels, padding) : intPercentiles(frame, padding);
  if (!range) return null;
  const a = range.low * frame.slope + frame.intercept;
  const b = range.high * frame.slope + frame.intercept;
  const [min, max] = a <= b ? [a, b] : [b, a];
  if (frame.format === "float32") return { center: (min + max) / 2, width: Math.max(max - min, 1e-6) };
  return { center: (min + max) / 2 + 0.5, width: max - min + 1 };
}

function intPercentiles(frame, padding) {
  const offset = { int8: 128, int16: 32768 }[frame.format] ?? 0;
  const counts = new Uint32Array(frame.format.endsWith("8") ? 256 : 65536);
  const px = frame.pixels;
  for (let i = 0; i < px.length; i += 1) counts[px[i] + offset] += 1;
  let total = 0;
  for (let v = 0; v < counts.length; v += 1) {
    if (isPadding(padding, v - offset)) counts[v] = 0;
    total += counts[v];
  }
  if (total === 0) return null;
  const at = (rank) => {
    let seen = 0;
    for (let v = 0; v < counts.length; v += 1) {
      seen += counts[v];
      if (seen > rank) return v - offset;
    }
    return counts.length - 1 - offset;
  };
  let low = at(Math.floor(0.01 * (total - 1)));
  let high = at(Math.ceil(0.99 * (total - 1)));
  if (low === high) [low, high] = [at(0), at(total - 1)];
  return { low, high };
}

function floatPercentiles(pixels, padding) {
  const step = Math.max(1, Math.floor(pixels.length / 65536));
  const kept = [];
  for (let i = 0; i < pixels.length; i += step) {
    if (Number.isFinite(pixels[i]) && !isPadding(padding, pixels[i])) kept.push(pixels[i]);
  }
  if (kept.length === 0) return null;
  const sorted = Float64Array.from(kept).sort();
  let low = sorted[Math.floor(0.01 * (sorted.length - 1))];
  let high = sorted[Math.ceil(0.99 * (sorted.length - 1))];
  if (low === high) [low, high] = [sorted[0], sorted[sorted.length - 1]];
  return { low, high };
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
