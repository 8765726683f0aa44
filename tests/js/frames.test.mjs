// Frame decoding: a frame response's samples and X- headers, as webviewer/dicomweb.py sends them.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  aspect, decodeFrame, number, parseSpacing, rangeWindow,
} from "../../webviewer/static/viewer/frames.js";

function response(format, rows, cols, samples, extra = {}) {
  const size = { "X-Rows": String(rows), "X-Columns": String(cols) };
  return [new Headers({ "X-Sample-Format": format, ...size, ...extra }), samples.buffer];
}

test("a uint16 frame keeps its samples, rescale, photometric, spacing, frame time and header window", () => {
  const frame = decodeFrame(
    ...response("uint16", 2, 3, new Uint16Array([0, 1, 2, 1000, 2000, 4095]), {
      "X-Rescale-Slope": "2",
      "X-Rescale-Intercept": "-1024",
      "X-Photometric": "MONOCHROME1",
      "X-Pixel-Spacing": "0.5\\0.25",
      "X-Frame-Time-Ms": "33.3",
      "X-Window-Center": "40",
      "X-Window-Width": "400",
    }),
  );
  assert.ok(frame.pixels instanceof Uint16Array);
  assert.deepEqual([...frame.pixels], [0, 1, 2, 1000, 2000, 4095]);
  assert.equal(frame.format, "uint16");
  assert.deepEqual([frame.rows, frame.cols, frame.slope, frame.intercept], [2, 3, 2, -1024]);
  assert.equal(frame.photometric, "MONOCHROME1");
  assert.deepEqual(frame.spacing, { row: 0.5, col: 0.25 });
  assert.equal(frame.frameTimeMs, 33.3);
  assert.deepEqual(frame.window, { center: 40, width: 400 });
  assert.equal(frame.position, 0);
});

test("without rescale, photometric, spacing or frame time headers the frame gets the DICOM defaults", () => {
  const frame = decodeFrame(...response("uint8", 1, 2, new Uint8Array([7, 9])));
  assert.deepEqual([frame.slope, frame.intercept, frame.photometric], [1, 0, "MONOCHROME2"]);
  assert.equal(frame.spacing, null);
  assert.equal(frame.frameTimeMs, null);
});

test("a rescale slope of zero is taken as one", () => {
  const frame = decodeFrame(...response("uint8", 1, 1, new Uint8Array([7]), { "X-Rescale-Slope": "0" }));
  assert.equal(frame.slope, 1);
});

test("each sample format gets its typed array", () => {
  const cases = [
    ["uint8", Uint8Array, 1],
    ["int8", Int8Array, 1],
    ["uint16", Uint16Array, 1],
    ["int16", Int16Array, 1],
    ["float32", Float32Array, 1],
    ["rgb8", Uint8Array, 3],
  ];
  for (const [format, Type, channels] of cases) {
    const frame = decodeFrame(...response(format, 2, 2, new Type(4 * channels).fill(1)));
    assert.ok(frame.pixels instanceof Type, format);
    assert.equal(frame.pixels.length, 4 * channels, format);
  }
});

test("without window headers an integer frame's window spans its rescaled minimum to maximum", () => {
  const frame = decodeFrame(...response("uint8", 1, 3, new Uint8Array([10, 250, 20])));
  // PS3.3 C.11.2.1.2 "linear": c - 0.5 - (w - 1) / 2 = 10 is black, c - 0.5 + (w - 1) / 2 = 250 white.
  assert.deepEqual(frame.window, { center: 130.5, width: 241 });
});

test("a window width of zero in the headers is ignored for the frame's range", () => {
  const headers = { "X-Window-Center": "40", "X-Window-Width": "0" };
  const frame = decodeFrame(...response("uint8", 1, 2, new Uint8Array([0, 99]), headers));
  assert.deepEqual(frame.window, { center: 50, width: 100 });
});

test("a negative rescale slope still gives the window from the rescaled minimum to maximum", () => {
  const window = rangeWindow({ pixels: new Int16Array([0, 100]), slope: -2, intercept: 10, format: "int16" });
  assert.deepEqual(window, { center: -89.5, width: 201 });
});

test("a float frame's range window is exact, and never zero wide", () => {
  const float = (values) => ({ pixels: new Float32Array(values), slope: 1, intercept: 0, format: "float32" });
  assert.deepEqual(rangeWindow(float([0.25, 0.75])), { center: 0.5, width: 0.5 });
  assert.deepEqual(rangeWindow(float([3, 3])), { center: 3, width: 1e-6 });
});

test("an rgb8 frame has no window", () => {
  const headers = { "X-Window-Center": "40", "X-Window-Width": "400" };
  const frame = decodeFrame(...response("rgb8", 1, 1, new Uint8Array([1, 2, 3]), headers));
  assert.equal(frame.window, null);
});

test("a frame whose body is not rows x columns x samples is refused as incomplete", () => {
  const short = response("uint16", 2, 2, new Uint16Array(3));
  assert.throws(() => decodeFrame(...short), /An image arrived incomplete\./);
  assert.throws(() => decodeFrame(...response("uint16", 2, 2, new Uint8Array(4))), /incomplete/);
  assert.throws(() => decodeFrame(...response("uint8", 0, 2, new Uint8Array(0))), /incomplete/);
  assert.throws(() => decodeFrame(...response("rgb8", 2, 2, new Uint8Array(4))), /incomplete/);
});

test("an unknown sample format is refused with its name", () => {
  const uint32 = response("uint32", 1, 1, new Uint32Array(1));
  assert.throws(() => decodeFrame(...uint32), /Unsupported sample format: uint32\./);
  assert.throws(() => decodeFrame(new Headers(), new ArrayBuffer(0)), /Unsupported sample format: null\./);
});

test("pixel spacing needs two positive numbers", () => {
  assert.deepEqual(parseSpacing("0.7\\0.7"), { row: 0.7, col: 0.7 });
  assert.equal(parseSpacing("0\\0.5"), null);
  assert.equal(parseSpacing("0.5"), null);
  assert.equal(parseSpacing("abc\\def"), null);
  assert.equal(parseSpacing(null), null);
});

test("a pixel's aspect is its row spacing over its column spacing, else one", () => {
  assert.equal(aspect({ spacing: { row: 1, col: 0.5 } }), 2);
  assert.equal(aspect({ spacing: null }), 1);
});

test("number() parses a leading number and falls back on anything else", () => {
  assert.equal(number("12.5", 0), 12.5);
  assert.equal(number(" -3e2 ", 0), -300);
  assert.equal(number("", 7), 7);
  assert.equal(number(null, null), null);
  assert.equal(number("NaN", 1), 1);
  assert.equal(number("Infinity", 1), 1);
});
