// Frame transfer (transfer.js): packed parts read from a stream, inflated and restored to the
// exact raw samples. The bodies are made here by an encoder written from the description in
// webviewer/transfer.py, with Node's zlib.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";

import { decodeSamples, fetchFrame, PACKED, readParts, restoreStrip } from "../../webviewer/static/viewer/transfer.js";

const CODEC = "up-zigzag-planes-deflate";
const WIDTH = { uint8: 1, int8: 1, rgb8: 1, uint16: 2, int16: 2, float32: 4 };
const UNSIGNED = { 1: Uint8Array, 2: Uint16Array, 4: Uint32Array };

/** The coded bytes (before deflate) of `samples`, an unsigned typed array, `stride` per row. */
function code(samples, stride, stripRows) {
  const width = samples.BYTES_PER_ELEMENT;
  const bits = 8 * width;
  const out = new Uint8Array(samples.length * width);
  const rows = samples.length / stride;
  for (let first = 0; first < rows; first += stripRows) {
    const n = Math.min(stripRows, rows - first) * stride;
    const base = first * stride;
    for (let i = 0; i < n; i += 1) {
      const index = base + i;
      const above = index >= stride ? samples[index - stride] : 0;
      const difference = BigInt.asIntN(bits, BigInt(samples[index]) - BigInt(above));
      const zigzag = BigInt.asUintN(bits, (difference << 1n) ^ (difference >> BigInt(bits - 1)));
      for (let p = 0; p < width; p += 1) out[base * width + p * n + i] = Number((zigzag >> BigInt(8 * p)) & 255n);
    }
  }
  return out;
}

function headersOf(format, rows, columns, stripRows, extra = {}) {
  return {
    "X-Sample-Format": format,
    "X-Rows": String(rows),
    "X-Columns": String(columns),
    "X-Codec": CODEC,
    "X-Strip-Rows": String(stripRows),
    ...extra,
  };
}

function part(headers, payload, last) {
  const described = new TextEncoder().encode(JSON.stringify(headers));
  const head = new DataView(new ArrayBuffer(8));
  head.setUint32(0, described.length);
  head.setUint32(4, last ? 0 : payload.length);
  return [new Uint8Array(head.buffer), described, payload];
}

function concat(pieces) {
  const out = new Uint8Array(pieces.reduce((sum, piece) => sum + piece.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}

/** A reader giving `bytes` in chunks of `size` bytes. */
function chunked(bytes, size) {
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < bytes.length; i += size) controller.enqueue(bytes.slice(i, i + size));
      controller.close();
    },
  }).getReader();
}

/** Samples of `format` (rows x columns) spanning the whole range of the type, with wrap-around neighbours. */
function samplesOf(format, rows, columns) {
  const channels = format === "rgb8" ? 3 : 1;
  const width = WIDTH[format];
  const samples = new UNSIGNED[width](rows * columns * channels);
  const top = 2 ** (8 * width);
  let seed = 12345;
  for (let i = 0; i < samples.length; i += 1) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    samples[i] = i % 7 === 0 ? (i % 2 ? 0 : top - 1) : (seed % top) * (i % 5 === 0 ? 1 : 0) + (i % 300);
  }
  return samples;
}

function packedFrame(format, rows, columns, stripRows) {
  const samples = samplesOf(format, rows, columns);
  const stride = columns * (format === "rgb8" ? 3 : 1);
  return { samples, payload: new Uint8Array(deflateSync(code(samples, stride, stripRows))) };
}

for (const format of ["uint8", "int8", "uint16", "int16", "rgb8", "float32"]) {
  test(`a packed ${format} frame is restored to exactly its samples`, async () => {
    const { samples, payload } = packedFrame(format, 37, 23, 8);
    const buffer = await decodeSamples(new Headers(headersOf(format, 37, 23, 8)), [payload]);
    assert.deepEqual(new Uint8Array(buffer), new Uint8Array(samples.buffer));
  });
}

test("restoreStrip adds each difference to the sample above, modulo the sample width", () => {
  // Rows [65535, 0] and [0, 3]: differences -1 and 0 (to zeros), then +1 (wrapping) and +3.
  const zigzag = [1, 0, 2, 6];
  const coded = new Uint8Array([...zigzag.map((z) => z & 255), ...zigzag.map((z) => z >> 8)]);
  const samples = new Uint16Array(4);
  restoreStrip(coded, samples, 0, 2, 2);
  assert.deepEqual([...samples], [65535, 0, 0, 3]);
});

test("readParts hands the preview to onPreview before it resolves with the frame", async () => {
  const full = packedFrame("uint16", 40, 30, 16);
  const small = packedFrame("uint16", 10, 8, 16);
  const previewHeaders = headersOf("uint16", 10, 8, 16, { "X-Preview-Of": "40x30", "X-Pixel-Spacing": "2\\2" });
  const body = concat([
    ...part(previewHeaders, small.payload, false),
    ...part(headersOf("uint16", 40, 30, 16, { "X-Pixel-Spacing": "0.5\\0.5" }), full.payload, true),
  ]);
  for (const size of [1, 7, 64, body.length]) {
    const seen = [];
    const frame = await readParts(chunked(body, size), (headers, buffer) => {
      seen.push([headers.get("X-Preview-Of"), headers.get("X-Rows"), new Uint8Array(buffer)]);
    });
    assert.deepEqual(seen, [["40x30", "10", new Uint8Array(small.samples.buffer)]], `chunks of ${size}`);
    assert.equal(frame.headers.get("X-Pixel-Spacing"), "0.5\\0.5");
    assert.deepEqual(new Uint8Array(frame.buffer), new Uint8Array(full.samples.buffer));
  }
});

test("a packed body cut short is an incomplete image", async () => {
  const { payload } = packedFrame("uint16", 40, 30, 16);
  const body = concat(part(headersOf("uint16", 40, 30, 16), payload, true));
  for (const end of [4, 20, body.length - payload.length + 10, body.length - 1]) {
    await assert.rejects(readParts(chunked(body.slice(0, end), 5)), /An image arrived incomplete/);
  }
});

test("a payload that inflates past the frame's size is refused", async () => {
  const { payload } = packedFrame("uint16", 40, 30, 16);
  await assert.rejects(decodeSamples(new Headers(headersOf("uint16", 39, 30, 16)), [payload]), /incomplete/);
});

test("an unknown codec is refused", async () => {
  const headers = new Headers({ ...headersOf("uint16", 4, 4, 4), "X-Codec": "lzw" });
  await assert.rejects(decodeSamples(headers, [new Uint8Array(1)]), /Unsupported frame coding: lzw/);
});

test("fetchFrame asks for packed frames and passes a raw answer through", async (t) => {
  const seen = [];
  t.mock.method(globalThis, "fetch", async (request, init) => {
    seen.push([request.headers.get("Accept"), init.credentials]);
    return new Response(new Uint8Array([1, 2, 3, 4]), {
      headers: { "Content-Type": "application/octet-stream", "X-Rows": "1" },
    });
  });
  const { headers, buffer } = await fetchFrame("https://pacs.test/frames/1", "the frame");
  assert.equal(seen[0][0].split(",")[0], PACKED);
  assert.equal(seen[0][1], "same-origin");
  assert.equal(headers.get("X-Rows"), "1");
  assert.deepEqual(new Uint8Array(buffer), new Uint8Array([1, 2, 3, 4]));
});

test("fetchFrame reads a packed answer into the frame's headers and samples", async (t) => {
  const { samples, payload } = packedFrame("int16", 12, 9, 4);
  const body = concat(part(headersOf("int16", 12, 9, 4), payload, true));
  t.mock.method(globalThis, "fetch", async () => new Response(body, { headers: { "Content-Type": PACKED } }));
  const previews = [];
  const { headers, buffer } = await fetchFrame("https://pacs.test/f", "the frame", undefined, (h) => previews.push(h));
  assert.deepEqual(previews, []);
  assert.equal(headers.get("X-Sample-Format"), "int16");
  assert.deepEqual(new Uint8Array(buffer), new Uint8Array(samples.buffer));
});
