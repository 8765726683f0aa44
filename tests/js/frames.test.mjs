// Frame decoding: a frame response's samples and X- headers, as webviewer/dicomweb.py sends them.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  aspect, autoWindow, decodeFrame, headerWindows, number, numbers, parsePadding, parseOverlays, parseSpacing,
  parseVoiLuts, rangeWindow, unrun,
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
  assert.deepEqual(frame.window, { center: 40, width: 400, explanation: "" });
  assert.deepEqual(frame.windows, [{ center: 40, width: 400, explanation: "" }]);
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

test("several windows arrive with their explanations, percent-encoded", () => {
  const headers = new Headers({
    "X-Window-Center": "40\\400\\-600",
    "X-Window-Width": "80\\2000\\1500",
    "X-Window-Explanation": "BRAIN\\BONE%20%C3%A9\\LUNG",
  });
  assert.deepEqual(headerWindows(headers), [
    { center: 40, width: 80, explanation: "BRAIN" },
    { center: 400, width: 2000, explanation: "BONE é" },
    { center: -600, width: 1500, explanation: "LUNG" },
  ]);
  const frame = decodeFrame(...response("int16", 1, 1, new Int16Array([0]), Object.fromEntries(headers)));
  assert.equal(frame.windows.length, 3);
  assert.equal(frame.window, frame.windows[0]);
});

test("windows without explanations, or of zero width, are kept or dropped as the standard says", () => {
  const headers = new Headers({ "X-Window-Center": "40\\10", "X-Window-Width": "400\\0" });
  assert.deepEqual(headerWindows(headers), [{ center: 40, width: 400, explanation: "" }]);
  assert.deepEqual(headerWindows(new Headers()), []);
});

test("the frame's geometry comes from its headers, null where absent", () => {
  const frame = decodeFrame(...response("uint8", 1, 1, new Uint8Array([0]), {
    "X-Image-Position-Patient": "99.5\\-301.5\\-149",
    "X-Image-Orientation-Patient": "-1\\0\\0\\0\\1\\0",
    "X-Slice-Thickness": "10",
    "X-Slice-Location": "-77.2",
    "X-Frame-Of-Reference-UID": "1.2.3",
  }));
  assert.deepEqual(frame.imagePosition, [99.5, -301.5, -149]);
  assert.deepEqual(frame.orientation, [-1, 0, 0, 0, 1, 0]);
  assert.deepEqual([frame.thickness, frame.sliceLocation, frame.frameOfReference], [10, -77.2, "1.2.3"]);
  const bare = decodeFrame(...response("uint8", 1, 1, new Uint8Array([0])));
  assert.deepEqual(
    [bare.imagePosition, bare.orientation, bare.thickness, bare.sliceLocation, bare.frameOfReference],
    [null, null, null, null, null],
  );
  assert.equal(numbers("1\\2", 3), null);
  assert.equal(numbers("1\\x\\3", 3), null);
});

test("polarity: a Presentation LUT Shape decides it, else MONOCHROME1 is inverse", () => {
  const polarity = (extra) => decodeFrame(...response("uint8", 1, 1, new Uint8Array([0]), extra)).inverse;
  assert.equal(polarity({}), false);
  assert.equal(polarity({ "X-Photometric": "MONOCHROME1" }), true);
  assert.equal(polarity({ "X-Photometric": "MONOCHROME2", "X-Presentation-Lut-Shape": "INVERSE" }), true);
  assert.equal(polarity({ "X-Photometric": "MONOCHROME1", "X-Presentation-Lut-Shape": "IDENTITY" }), false);
  assert.equal(polarity({ "X-Photometric": "MONOCHROME1", "X-Presentation-Lut-Shape": "INVERSE" }), true);
});

test("a VOI LUT becomes the first window, over its input range, and the default", () => {
  const words = new Uint8Array(new Uint16Array([0, 100, 4095]).buffer);
  const data = btoa(String.fromCharCode(...words));
  const luts = JSON.stringify([{ first: -10, step: 2, bits: 12, explanation: "", data }]);
  const frame = decodeFrame(...response("int16", 1, 1, new Int16Array([0]), {
    "X-Voi-Luts": luts, "X-Window-Center": "40", "X-Window-Width": "400",
  }));
  const [lut, window] = frame.windows;
  // Inputs -10, -8, -6: the window from -10 to -6 (linear: c - 0.5 -/+ (w - 1) / 2).
  assert.deepEqual([lut.center, lut.width, lut.explanation], [-7.5, 5, "VOI LUT 1"]);
  assert.deepEqual([...lut.lut.data], [0, 100, 4095]);
  assert.deepEqual([lut.lut.first, lut.lut.step, lut.lut.bits], [-10, 2, 12]);
  assert.deepEqual(window, { center: 40, width: 400, explanation: "" });
  assert.equal(frame.window, lut);
  assert.deepEqual(parseVoiLuts("not json"), []);
  assert.deepEqual(parseVoiLuts(JSON.stringify([{ first: 0, bits: 20, data }])), []);
});

test("overlay run lengths unpack to a bitmap, and runs past its end are refused", () => {
  assert.deepEqual([...unrun("2,3,1", 6)], [0, 0, 1, 1, 1, 0]);
  assert.deepEqual([...unrun("0,2", 3)], [1, 1, 0]);
  assert.equal(unrun("5,5", 6), null);
  assert.equal(unrun("1,x", 6), null);
  const [plane] = parseOverlays(JSON.stringify([{ rows: 2, columns: 3, origin: [2, 0], type: "G", label: "A", runs: "1,2" }]));
  assert.deepEqual([plane.rows, plane.cols, plane.top, plane.left, plane.label], [2, 3, 1, 0, "A"]);
  assert.deepEqual([...plane.bits], [0, 1, 1, 0, 0, 0]);
  assert.deepEqual(parseOverlays("[{\"rows\": 0}]"), []);
});

test("a preview frame carries no overlays (their origin is the full frame's)", () => {
  const overlays = JSON.stringify([{ rows: 1, columns: 1, origin: [1, 1], runs: "0,1" }]);
  const full = decodeFrame(...response("uint8", 1, 1, new Uint8Array([0]), { "X-Overlays": overlays }));
  const preview = decodeFrame(...response("uint8", 1, 1, new Uint8Array([0]), {
    "X-Overlays": overlays, "X-Preview-Of": "4x4",
  }));
  assert.equal(full.overlays.length, 1);
  assert.equal(preview.overlays.length, 0);
});

test("padding is a value or a range of stored values", () => {
  assert.deepEqual(parsePadding("-2000"), { low: -2000, high: -2000 });
  assert.deepEqual(parsePadding("100\\-5"), { low: -5, high: 100 });
  assert.equal(parsePadding(null), null);
});

test("autoWindow spans the 1st to 99th percentile of the modality values, padding left out", () => {
  const pixels = new Int16Array(1000);
  for (let i = 0; i < 1000; i += 1) pixels[i] = i < 100 ? -2000 : i - 100; // 100 padding, then 0..899
  const frame = { format: "int16", pixels, slope: 1, intercept: -1024, padding: { low: -2000, high: -2000 } };
  // 900 values 0..899: rank floor(0.01 * 899) = 8 and ceil(0.99 * 899) = 891, minus 1024.
  assert.deepEqual(autoWindow(frame), { center: (8 + 891) / 2 - 1024 + 0.5, width: 891 - 8 + 1 });
  const unpadded = autoWindow({ ...frame, padding: null });
  assert.ok(unpadded.center - unpadded.width / 2 < -2000 - 1024 + 1, "padding pulls the window down");
});

test("autoWindow falls back to the full range when the percentiles meet, and is null without values", () => {
  const mostlyZero = new Uint16Array(1000);
  mostlyZero[999] = 500;
  assert.deepEqual(autoWindow({ format: "uint16", pixels: mostlyZero, slope: 1, intercept: 0 }), { center: 250.5, width: 501 });
  const padded = { format: "uint8", pixels: new Uint8Array([7, 7]), slope: 1, intercept: 0, padding: { low: 7, high: 7 } };
  assert.equal(autoWindow(padded), null);
  assert.equal(autoWindow({ format: "rgb8", pixels: new Uint8Array(3), slope: 1, intercept: 0 }), null);
});

test("autoWindow of a float frame is an exact window over its sampled percentiles", () => {
  const pixels = Float32Array.from({ length: 101 }, (_, i) => i / 100);
  const window = autoWindow({ format: "float32", pixels, slope: 1, intercept: 0 });
  assert.ok(Math.abs(window.center - 0.5) < 1e-6);
  assert.ok(Math.abs(window.width - 0.98) < 1e-6);
});

test("decodeFrame uses autoWindow, not the range, when the data set has no window", () => {
  const pixels = Uint16Array.from({ length: 200 }, (_, i) => 100 + (i % 50));
  pixels[0] = 0;
  pixels[199] = 60000; // one outlier each way
  const frame = decodeFrame(...response("uint16", 10, 20, pixels));
  assert.deepEqual(frame.window, autoWindow(frame));
  assert.notDeepEqual(frame.window, rangeWindow(frame));
});
