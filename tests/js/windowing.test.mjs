// Window/level: DICOM PS3.3 C.11.2.1.2 window functions, lookup tables and painting into RGBA.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  draggedWindow,
  grayPixel,
  lutFor,
  lutOffset,
  paint,
  paintOverlays,
  polarityCorrection,
  voiLutFor,
  voiLutLevel,
  roundForDisplay,
  windowFunction,
} from "../../webviewer/static/viewer/windowing.js";

/** The standard's "linear" function, written as PS3.3 states it, with ymin 0 and ymax 1. */
function dicomLinear(x, c, w) {
  if (x <= c - 0.5 - (w - 1) / 2) return 0;
  if (x > c - 0.5 + (w - 1) / 2) return 1;
  return (x - (c - 0.5)) / (w - 1) + 0.5;
}

/** The bytes R, G, B, A of each painted pixel. */
function rgba(out) {
  return [...new Uint8Array(out.buffer)];
}

function painted(frame, center, width, invert = false) {
  const out = new Uint32Array(frame.pixels.length / (frame.format === "rgb8" ? 3 : 1));
  paint(frame, out, center, width, invert);
  return rgba(out);
}

test("the linear window function for integer samples is the standard's", () => {
  for (const [c, w] of [[40, 400], [-600, 1500], [0, 2], [127.5, 256]]) {
    const level = windowFunction(c, w, false);
    for (let x = c - w; x <= c + w; x += w / 40) {
      assert.ok(Math.abs(level(x) - dicomLinear(x, c, w)) < 1e-12, `c ${c} w ${w} x ${x}`);
    }
  }
});

test("a window one wide is a threshold at center - 0.5", () => {
  const level = windowFunction(100, 1, false);
  assert.deepEqual([level(99), level(99.5), level(99.6), level(100)], [0, 0, 1, 1]);
});

test("the linear exact window function for float samples runs from c - w/2 to c + w/2", () => {
  const level = windowFunction(0, 2, true);
  const levels = [-2, -1, -0.5, 0, 1, 5].map(level);
  assert.deepEqual(levels, [0, 0, 0.25, 0.5, 1, 1]);
});

test("a gray pixel is opaque RGBA with equal channels, inverted on request", () => {
  assert.equal(grayPixel(0, false), 0xff000000);
  assert.equal(grayPixel(1, false), 0xffffffff);
  assert.equal(grayPixel(0.5, false), 0xff808080);
  assert.equal(grayPixel(1, true), 0xff000000);
  assert.equal(grayPixel(0.25, true), 0xffbfbfbf);
});

test("signed samples index their lookup table from its middle", () => {
  assert.deepEqual(["int8", "int16", "uint8", "uint16"].map(lutOffset), [128, 32768, 0, 0]);
});

test("an int16 frame is painted through its lookup table, negative samples included", () => {
  const pixels = new Int16Array([-1000, 0, 1000, -32768, 32767]);
  const frame = { format: "int16", slope: 1, intercept: 0, pixels };
  const bytes = painted(frame, 0, 2000);
  const grays = [0, 4, 8, 12, 16].map((i) => bytes[i]);
  assert.deepEqual(grays, [0, 128, 255, 0, 255]);
  assert.ok([3, 7, 11, 15, 19].every((i) => bytes[i] === 255), "opaque");
});

test("a CT frame is windowed on rescaled values (Hounsfield units)", () => {
  const frame = { format: "uint16", slope: 1, intercept: -1024, pixels: new Uint16Array([0, 1024, 2048]) };
  const bytes = painted(frame, 0, 2049);
  assert.deepEqual([bytes[0], bytes[4], bytes[8]], [0, 128, 255]);
});

test("the lookup table covers every stored value of 8-bit and 16-bit samples", () => {
  const eight = lutFor({ format: "uint8", slope: 1, intercept: 0 }, 128, 256, false);
  const sixteen = lutFor({ format: "int16", slope: 1, intercept: 0 }, 0, 100, false);
  assert.equal(eight.length, 256);
  assert.equal(sixteen.length, 65536);
  assert.equal(eight[0], 0xff000000);
  assert.equal(eight[255], 0xffffffff);
});

test("the same window on the same kind of frame reuses its lookup table", () => {
  const frame = { format: "uint16", slope: 1, intercept: -1024 };
  const first = lutFor(frame, 40, 400, false);
  assert.equal(lutFor({ ...frame }, 40, 400, false), first);
  assert.notEqual(lutFor(frame, 40, 401, false), first);
  assert.notEqual(lutFor(frame, 40, 400, true), first);
});

test("a float frame is painted with the exact window function", () => {
  const frame = { format: "float32", slope: 1, intercept: 0, pixels: new Float32Array([-1, 0, 1]) };
  const bytes = painted(frame, 0, 2);
  assert.deepEqual([bytes[0], bytes[4], bytes[8]], [0, 128, 255]);
});

test("an rgb8 frame is painted as its own colours, inverted on request, whatever the window", () => {
  const frame = { format: "rgb8", slope: 1, intercept: 0, pixels: new Uint8Array([10, 20, 30, 255, 0, 128]) };
  assert.deepEqual(painted(frame, undefined, undefined), [10, 20, 30, 255, 255, 0, 128, 255]);
  assert.deepEqual(painted(frame, 40, 400, true), [245, 235, 225, 255, 0, 255, 127, 255]);
});

test("invert paints a grayscale frame as its negative", () => {
  const frame = { format: "uint8", slope: 1, intercept: 0, pixels: new Uint8Array([0, 64, 255]) };
  const plain = painted(frame, 128, 256);
  const inverted = painted(frame, 128, 256, true);
  for (const i of [0, 4, 8]) assert.equal(plain[i] + inverted[i], 255);
});

test("dragging down raises the center and dragging right widens the window", () => {
  const start = { center: 40, width: 400 };
  assert.deepEqual(draggedWindow(start, 0, 100, "int16"), { center: 240, width: 400 });
  assert.deepEqual(draggedWindow(start, 0, -50, "int16"), { center: -60, width: 400 });
  const wider = draggedWindow(start, 200 * Math.log(2), 0, "int16");
  assert.equal(wider.center, 40);
  assert.ok(Math.abs(wider.width - 800) < 1e-9);
});

test("a W/L drag never narrows the window below one (integer) or 1e-6 (float)", () => {
  assert.equal(draggedWindow({ center: 0, width: 2 }, -5000, 0, "uint16").width, 1);
  assert.equal(draggedWindow({ center: 0, width: 2 }, -50000, 0, "float32").width, 1e-6);
});

test("window values are shown whole from 100 up and to three significant digits below", () => {
  assert.deepEqual(
    [1234.56, -600, 100.4, 99.96, 40, 12.345, 0.123456, -0.5].map(roundForDisplay),
    ["1235", "-600", "100", "100", "40", "12.3", "0.123", "-0.5"],
  );
});

test("the sigmoid VOI function is the standard's (PS3.3 C.11.2.1.3.1)", () => {
  const level = windowFunction(40, 80, false, "SIGMOID");
  for (const x of [-100, 0, 40, 80, 300]) {
    assert.ok(Math.abs(level(x) - 1 / (1 + Math.exp((-4 * (x - 40)) / 80))) < 1e-12);
  }
  assert.equal(level(40), 0.5);
});

test("a frame's VOI LUT function applies to its integer samples", () => {
  const pixels = new Uint8Array([0, 1, 2]);
  const exact = painted({ format: "uint8", slope: 1, intercept: 0, pixels, voiFunction: "LINEAR_EXACT" }, 1, 2);
  const linear = painted({ format: "uint8", slope: 1, intercept: 0, pixels, voiFunction: "LINEAR" }, 1, 2);
  assert.deepEqual([exact[0], exact[4], exact[8]], [0, 128, 255]);
  assert.deepEqual([linear[0], linear[4], linear[8]], [0, 255, 255]);
});

const voiLut = { first: 10, step: 1, bits: 8, data: new Uint16Array([0, 51, 255]), key: "t" };

test("a VOI LUT maps modality values below and above its range to its first and last entries", () => {
  assert.deepEqual([0, 10, 11, 12, 99].map((v) => voiLutLevel(voiLut, v)), [0, 0, 0.2, 1, 1]);
  const sampled = { ...voiLut, step: 10, first: 0 };
  assert.deepEqual([0, 9, 10, 25].map((v) => voiLutLevel(sampled, v)), [0, 0, 0.2, 1]);
});

test("the window that is exactly a VOI LUT's paints through the table, any other linearly", () => {
  const entry = { center: 11.5, width: 3, explanation: "", lut: voiLut };
  const frame = { format: "uint8", slope: 1, intercept: 0, pixels: new Uint8Array([10, 11, 12]), windows: [entry] };
  assert.equal(voiLutFor(frame, 11.5, 3), voiLut);
  assert.equal(voiLutFor(frame, 11.5, 4), null);
  const bytes = painted(frame, 11.5, 3);
  assert.deepEqual([bytes[0], bytes[4], bytes[8]], [0, 51, 255]);
  const linear = painted(frame, 11.5, 4);
  assert.notDeepEqual([linear[0], linear[4], linear[8]], [0, 51, 255]);
});

test("a float frame paints through its VOI LUT too", () => {
  const entry = { center: 11.5, width: 3, lut: voiLut };
  const frame = { format: "float32", slope: 1, intercept: 0, pixels: new Float32Array([10, 11, 12]), windows: [entry] };
  const bytes = painted(frame, 11.5, 3);
  assert.deepEqual([bytes[0], bytes[4], bytes[8]], [0, 51, 255]);
});

test("a Presentation LUT Shape that disagrees with MONOCHROME1 corrects the caller's inversion", () => {
  assert.equal(polarityCorrection({ photometric: "MONOCHROME2", inverse: false }), false);
  assert.equal(polarityCorrection({ photometric: "MONOCHROME1", inverse: true }), false);
  assert.equal(polarityCorrection({ photometric: "MONOCHROME2", inverse: true }), true);
  assert.equal(polarityCorrection({ photometric: "MONOCHROME1", inverse: false }), true);
  assert.equal(polarityCorrection({ photometric: "MONOCHROME1" }), false);
  // MONOCHROME2 with INVERSE, the view not inverted (the caller passes invert = false): shown negative.
  const frame = { format: "uint8", slope: 1, intercept: 0, pixels: new Uint8Array([0, 255]), photometric: "MONOCHROME2", inverse: true };
  const bytes = painted(frame, 128, 256, false);
  assert.deepEqual([bytes[0], bytes[4]], [255, 0]);
});

test("overlay planes are painted white at their origin, clipped to the image", () => {
  const plane = { rows: 2, cols: 2, top: 1, left: 1, bits: new Uint8Array([1, 0, 1, 1]) };
  const frame = { format: "uint8", slope: 1, intercept: 0, rows: 2, cols: 2, pixels: new Uint8Array(4), overlays: [plane] };
  const out = new Uint32Array(4);
  paint(frame, out, 128, 256, false);
  assert.deepEqual([...out], [0xff000000, 0xff000000, 0xff000000, 0xffffffff]);
  const outside = { ...plane, top: -1, left: -1 };
  const clipped = new Uint32Array(4);
  paintOverlays({ ...frame, overlays: [outside] }, clipped);
  assert.deepEqual([...clipped], [0xffffffff, 0, 0, 0]);
  const off = new Uint32Array(4);
  paint(frame, off, 128, 256, false, { overlays: false });
  assert.ok(off.every((p) => p === 0xff000000));
});
