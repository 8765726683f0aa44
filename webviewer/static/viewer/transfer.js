/*
 * How a frame travels from the server: the one place that fetches a frame and hands
 * back its X- headers and raw samples, whatever encoding carried them. Frames are asked
 * for packed (PACKED); a large one then comes as parts (webviewer/transfer.py): a
 * preview reduced 4 times per axis, then the frame, each losslessly coded (the difference
 * to the row above, zigzagged, its bytes in planes per strip of rows, deflated). The
 * frame is inflated and its strips restored as they arrive. Small frames come raw.
 */

import { get } from "./net.js";
import { FORMATS } from "./frames.js";

export const PACKED = "application/vnd.pacs.frame-parts";
const CODEC = "up-zigzag-planes-deflate";
const UNSIGNED = { 1: Uint8Array, 2: Uint16Array, 4: Uint32Array };

function incomplete() {
  return new Error("An image arrived incomplete.");
}

/**
 * The headers and raw sample bytes of the frame at `url`; `what` names it in errors.
 * When a preview comes first, `onPreview(headers, buffer)` gets it (its own X-Rows and
 * X-Columns, X-Preview-Of "ROWSxCOLUMNS") before the promise resolves with the frame.
 */
export async function fetchFrame(url, what, signal, onPreview) {
  // get() passes a Request's headers on: it only adds credentials, redirect and signal.
  const request = new Request(url, { headers: { Accept: `${PACKED}, application/octet-stream;q=0.5` } });
  const response = await get(request, what, signal);
  if ((response.headers.get("Content-Type") ?? "").split(";")[0].trim() !== PACKED) {
    return { headers: response.headers, buffer: await response.arrayBuffer() };
  }
  return readParts(response.body.getReader(), onPreview);
}

/** The frame of a PACKED body read from `reader`, after handing a preview to `onPreview`. */
export async function readParts(reader, onPreview) {
  const bytes = new ByteReader(reader);
  for (;;) {
    const head = new DataView((await bytes.exactly(8)).buffer);
    const described = new TextDecoder().decode(await bytes.exactly(head.getUint32(0)));
    const headers = new Headers(JSON.parse(described));
    const length = head.getUint32(4);
    if (length === 0) return { headers, buffer: await decodeSamples(headers, bytes.rest()) };
    const buffer = await decodeSamples(headers, [await bytes.exactly(length)]);
    if (headers.has("X-Preview-Of") && onPreview) onPreview(headers, buffer);
  }
}

/** Reads a stream's chunks: so many bytes at a time, then all the rest. */
class ByteReader {
  constructor(reader) {
    this.reader = reader;
    this.pending = [];
    this.pendingBytes = 0;
  }

  async exactly(count) {
    while (this.pendingBytes < count) {
      const { done, value } = await this.reader.read();
      if (done) throw incomplete();
      this.pending.push(value);
      this.pendingBytes += value.byteLength;
    }
    const out = new Uint8Array(count);
    let offset = 0;
    while (offset < count) {
      const chunk = this.pending[0];
      const take = Math.min(chunk.byteLength, count - offset);
      out.set(chunk.subarray(0, take), offset);
      offset += take;
      if (take === chunk.byteLength) this.pending.shift();
      else this.pending[0] = chunk.subarray(take);
    }
    this.pendingBytes -= count;
    return out;
  }

  async *rest() {
    yield* this.pending.splice(0);
    for (;;) {
      const { done, value } = await this.reader.read();
      if (done) return;
      yield value;
    }
  }
}

/** The rows, columns, samples per row, bytes per sample and strip height a part's headers give. */
export function layout(headers) {
  const format = FORMATS[headers.get("X-Sample-Format")];
  const rows = Number(headers.get("X-Rows"));
  const columns = Number(headers.get("X-Columns"));
  const stripRows = Number(headers.get("X-Strip-Rows"));
  if (!format || headers.get("X-Codec") !== CODEC || !(rows > 0 && columns > 0 && stripRows > 0)) {
    throw new Error(`Unsupported frame coding: ${headers.get("X-Codec")}.`);
  }
  const stride = columns * format.channels;
  return { rows, stride, width: format.Type.BYTES_PER_ELEMENT, stripRows };
}

/** The raw samples (an ArrayBuffer) of a coded payload arriving as `chunks` (async or not). */
export async function decodeSamples(headers, chunks) {
  const { rows, stride, width, stripRows } = layout(headers);
  const coded = new Uint8Array(rows * stride * width);
  const samples = new UNSIGNED[width](rows * stride);
  let restored = 0;
  await inflate(chunks, coded, (inflated) => {
    while (restored < rows) {
      const count = Math.min(stripRows, rows - restored);
      if (inflated < (restored + count) * stride * width) return;
      restoreStrip(coded, samples, restored, count, stride);
      restored += count;
    }
  });
  if (restored < rows) throw incomplete();
  return samples.buffer;
}

/** Inflate the zlib stream of `chunks` into `into`, calling `progress(bytes so far)` as it grows. */
export async function inflate(chunks, into, progress) {
  const stream = new DecompressionStream("deflate");
  const writer = stream.writable.getWriter();
  const feeding = (async () => {
    try {
      for await (const chunk of chunks) await writer.write(chunk);
      await writer.close();
    } catch (error) {
      await writer.abort(error).catch(() => {});
      throw error;
    }
  })();
  const reader = stream.readable.getReader();
  let offset = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (offset + value.byteLength > into.byteLength) throw incomplete();
      into.set(value, offset);
      offset += value.byteLength;
      progress(offset);
    }
  } catch (error) {
    await reader.cancel(error).catch(() => {});
    await feeding.catch(() => {});
    throw error.name === "AbortError" ? error : incomplete();
  }
  await feeding;
}

/**
 * Restore `count` rows from row `first` of `samples` (an unsigned typed array of the
 * sample width) from their coded strip in `coded`: the bytes of each zigzagged difference
 * in planes, least significant first; each sample is the difference plus the sample one
 * row (`stride` samples) above, modulo the width (the first row's above counts as zero).
 */
export function restoreStrip(coded, samples, first, count, stride) {
  const width = samples.BYTES_PER_ELEMENT;
  const n = count * stride;
  const base = first * stride;
  const at = base * width;
  for (let i = 0; i < n; i += 1) {
    let z = coded[at + i];
    if (width >= 2) z |= coded[at + n + i] << 8;
    if (width === 4) z = (z | (coded[at + 2 * n + i] << 16) | (coded[at + 3 * n + i] << 24)) >>> 0;
    const difference = (z >>> 1) ^ -(z & 1);
    const index = base + i;
    samples[index] = index >= stride ? difference + samples[index - stride] : difference;
  }
}
