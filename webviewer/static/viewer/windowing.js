/*
 * Window/level (pure, no DOM): the DICOM VOI functions (LINEAR, LINEAR_EXACT, SIGMOID) and
 * VOI LUTs, the lookup tables from stored value to gray RGBA for integer samples (a few
 * kept), painting a frame into RGBA pixels with its overlay planes on top, the window a
 * W/L drag gives, and how a window value is shown.
 *
 * The grayscale pipeline (PS3.3 C.11, PS3.4 N.2): stored value -> rescale (slope,
 * intercept; a Modality LUT was applied by the server) -> VOI (the window, or the VOI LUT
 * whose window it is exactly: see voiLutFor) -> polarity (the Presentation LUT Shape, or
 * MONOCHROME1) -> 8-bit gray; overlay planes are painted white over it.
 */

/** DICOM PS3.3 C.11.2.1.2: "linear" for integer samples, "linear exact" for float, or `fn` when given. */
export function windowFunction(center, width, exact, fn = exact ? "LINEAR_EXACT" : "LINEAR") {
  if (fn === "SIGMOID") return (value) => 1 / (1 + Math.exp((-4 * (value - center)) / width));
  const isExact = fn === "LINEAR_EXACT";
  const span = isExact ? width : width - 1;
  const low = isExact ? center - width / 2 : center - 0.5 - span / 2;
  if (span <= 0) return (value) => (value > low ? 1 : 0);
  return (value) => Math.min(1, Math.max(0, (value - low) / span));
}

/** The level (0..1) a VOI LUT `lut` gives modality value `value`. */
export function voiLutLevel(lut, value) {
  const last = lut.data.length - 1;
  const index = Math.min(last, Math.max(0, Math.floor((value - lut.first) / lut.step)));
  return Math.min(1, lut.data[index] / (2 ** lut.bits - 1));
}

/** The VOI LUT of `frame` whose window is exactly (center, width), or null: a chosen VOI LUT. */
export function voiLutFor(frame, center, width) {
  const chosen = (frame.windows ?? []).find((w) => w.lut && w.center === center && w.width === width);
  return chosen ? chosen.lut : null;
}

/** The level function of the frame's VOI for (center, width): its VOI LUT or its VOI function. */
function levelFor(frame, center, width) {
  const lut = voiLutFor(frame, center, width);
  if (lut) return (value) => voiLutLevel(lut, value);
  const exact = frame.format === "float32";
  const fn = frame.voiFunction === "LINEAR" && exact ? "LINEAR_EXACT" : frame.voiFunction;
  return windowFunction(center, width, exact, fn ?? (exact ? "LINEAR_EXACT" : "LINEAR"));
}

/** An opaque gray RGBA pixel (little-endian Uint32) for a level 0..1. */
export function grayPixel(level, invert) {
  const g = Math.round((invert ? 1 - level : level) * 255);
  return (0xff000000 | (g << 16) | (g << 8) | g) >>> 0;
}

/**
 * Whether the frame's own polarity differs from what the caller assumed: the callers pass
 * `invert` as the view's inversion XOR MONOCHROME1; a Presentation LUT Shape may say otherwise.
 */
export function polarityCorrection(frame) {
  return Boolean(frame.inverse ?? frame.photometric === "MONOCHROME1") !== (frame.photometric === "MONOCHROME1");
}

const luts = new Map();

/** The lookup table from stored value (plus offset) to RGBA for integer samples. */
export function lutFor(frame, center, width, invert) {
  const voi = voiLutFor(frame, center, width);
  const key = [frame.format, frame.slope, frame.intercept, center, width, invert, frame.voiFunction, voi?.key].join();
  let lut = luts.get(key);
  if (!lut) {
    if (luts.size >= 8) luts.clear();
    lut = buildLut(frame, center, width, invert);
    luts.set(key, lut);
  }
  return lut;
}

function buildLut(frame, center, width, invert) {
  const size = frame.format.endsWith("8") ? 256 : 65536;
  const offset = lutOffset(frame.format);
  const level = levelFor(frame, center, width);
  const lut = new Uint32Array(size);
  for (let i = 0; i < size; i += 1) {
    lut[i] = grayPixel(level((i - offset) * frame.slope + frame.intercept), invert);
  }
  return lut;
}

/** What is added to a signed sample to index its lookup table. */
export function lutOffset(format) {
  return { int8: 128, int16: 32768 }[format] ?? 0;
}

/**
 * Fill `out` (RGBA as Uint32) with the frame under the given window, then its overlay
 * planes (unless `options.overlays` is false). `invert` is the view's inversion XOR
 * MONOCHROME1, as the viewer computes it; the Presentation LUT Shape is applied on top.
 */
export function paint(frame, out, center, width, invert, options = {}) {
  const px = frame.pixels;
  if (frame.format === "rgb8") {
    const mask = invert ? 255 : 0;
    for (let p = 0, s = 0; p < out.length; p += 1, s += 3) {
      out[p] = (0xff000000 | ((px[s + 2] ^ mask) << 16) | ((px[s + 1] ^ mask) << 8) | (px[s] ^ mask)) >>> 0;
    }
  } else {
    const flipped = invert !== polarityCorrection(frame);
    if (frame.format === "float32") {
      const level = levelFor(frame, center, width);
      for (let p = 0; p < out.length; p += 1) {
        out[p] = grayPixel(level(px[p] * frame.slope + frame.intercept), flipped);
      }
    } else {
      const lut = lutFor(frame, center, width, flipped);
      const offset = lutOffset(frame.format);
      for (let p = 0; p < out.length; p += 1) out[p] = lut[px[p] + offset];
    }
  }
  if (options.overlays !== false) paintOverlays(frame, out);
}

/** Paint the frame's overlay planes white over `out` (RGBA as Uint32, the frame's size). */
export function paintOverlays(frame, out) {
  for (const plane of frame.overlays ?? []) {
    const rowStart = Math.max(0, -plane.top);
    const rowEnd = Math.min(plane.rows, frame.rows - plane.top);
    const colStart = Math.max(0, -plane.left);
    const colEnd = Math.min(plane.cols, frame.cols - plane.left);
    for (let r = rowStart; r < rowEnd; r += 1) {
      const from = r * plane.cols;
      const to = (r + plane.top) * frame.cols + plane.left;
      for (let c = colStart; c < colEnd; c += 1) {
        if (plane.bits[from + c]) out[to + c] = 0xffffffff;
      }
    }
  }
}

/** The window after a W/L drag by (dx, dy) CSS pixels from `start` ({ center, width }). */
export function draggedWindow(start, dx, dy, format) {
  const minimum = format === "float32" ? 1e-6 : 1;
  return {
    center: start.center + (dy * start.width) / 200,
    width: Math.max(minimum, start.width * Math.exp(dx / 200)),
  };
}

/** A window value as the overlay shows it: whole above 100, three significant digits below. */
export function roundForDisplay(value) {
  return Math.abs(value) >= 100 ? String(Math.round(value)) : String(Number(value.toPrecision(3)));
}
