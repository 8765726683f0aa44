/*
 * Window/level (pure, no DOM): the DICOM window functions, the lookup tables from stored
 * value to gray RGBA for integer samples (a few kept), painting a frame into RGBA
 * pixels, the window a W/L drag gives, and how a window value is shown.
 */

/** DICOM PS3.3 C.11.2.1.2: "linear" for integer samples, "linear exact" for float. */
export function windowFunction(center, width, exact) {
  const span = exact ? width : width - 1;
  const low = exact ? center - width / 2 : center - 0.5 - span / 2;
  if (span <= 0) return (value) => (value > low ? 1 : 0);
  return (value) => Math.min(1, Math.max(0, (value - low) / span));
}

/** An opaque gray RGBA pixel (little-endian Uint32) for a level 0..1. */
export function grayPixel(level, invert) {
  const g = Math.round((invert ? 1 - level : level) * 255);
  return (0xff000000 | (g << 16) | (g << 8) | g) >>> 0;
}

const luts = new Map();

/** The lookup table from stored value (plus offset) to RGBA for integer samples. */
export function lutFor(frame, center, width, invert) {
  const key = [frame.format, frame.slope, frame.intercept, center, width, invert].join();
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
  const level = windowFunction(center, width, false);
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

/** Fill `out` (RGBA as Uint32) with the frame under the given window. */
export function paint(frame, out, center, width, invert) {
  const px = frame.pixels;
  if (frame.format === "rgb8") {
    const mask = invert ? 255 : 0;
    for (let p = 0, s = 0; p < out.length; p += 1, s += 3) {
      out[p] = (0xff000000 | ((px[s + 2] ^ mask) << 16) | ((px[s + 1] ^ mask) << 8) | (px[s] ^ mask)) >>> 0;
    }
  } else if (frame.format === "float32") {
    const level = windowFunction(center, width, true);
    for (let p = 0; p < out.length; p += 1) {
      out[p] = grayPixel(level(px[p] * frame.slope + frame.intercept), invert);
    }
  } else {
    const lut = lutFor(frame, center, width, invert);
    const offset = lutOffset(frame.format);
    for (let p = 0; p < out.length; p += 1) out[p] = lut[px[p] + offset];
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
