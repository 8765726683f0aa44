/*
 * The frame cache and the prefetcher: decoded frames stay in a bounded cache as typed
 * arrays; at most MAX_IN_FLIGHT requests run at once, in the order slices.js gives around
 * the shown slice; thumbnails wait here for their slice.
 */
import { report, state } from "./context.js";
import { decodeFrame } from "./frames.js";
import { fetchFrame } from "./transfer.js";
import { evictionVictim, fetchOrder } from "./slices.js";
import { cine } from "./cine.js";
import { requestDraw } from "./draw.js";
import { current, currentSlice, drawThumb } from "./series.js";

const MAX_IN_FLIGHT = 4;
const CACHE_BUDGET = 768 * 2 ** 20;          // bytes of samples kept in the browser
const BACKGROUND_LIMIT = 0.9 * CACHE_BUDGET;  // no background prefetch above this

export const cache = new Map(); // slice key -> frame, oldest first
const inFlight = new Map();     // slice key -> AbortController
const failed = new Set();       // slice keys whose fetch failed (not retried)
const thumbJobs = new Map();    // slice key -> { record, slice } waiting for its thumbnail
let cacheBytes = 0;
let queue = [];                 // slices to fetch, most urgent first
let urgentCount = 0;            // queue[0..urgentCount) is fetched even when the cache is full
let queueCursor = 0;

/** Order the fetches around the shown slice: ahead, behind, thumbnails, then the rest. */
export function plan() {
  if (!current?.slices) return;
  const thumbs = [...thumbJobs.values()].map((job) => job.slice);
  ({ queue, urgentCount } = fetchOrder(current.slices, state.index, cine.playing, thumbs));
  queueCursor = 0;
  pump();
}

function pump() {
  while (inFlight.size < MAX_IN_FLIGHT && queueCursor < queue.length) {
    if (queueCursor >= urgentCount && cacheBytes > BACKGROUND_LIMIT) break;
    const slice = queue[queueCursor];
    queueCursor += 1;
    if (!cache.has(slice.key) && !inFlight.has(slice.key) && !failed.has(slice.key)) {
      fetchSlice(slice);
    }
  }
  state.inFlight = inFlight.size;
}

async function fetchSlice(slice) {
  const controller = new AbortController();
  inFlight.set(slice.key, controller);
  state.frameRequests += 1;
  try {
    const { headers, buffer } = await fetchFrame(slice.url, slice.name, controller.signal);
    const frame = decodeFrame(headers, buffer);
    frame.position = slice.position;
    remember(slice.key, frame);
    frameArrived(slice, frame);
  } catch (error) {
    if (error.name !== "AbortError") {
      failed.add(slice.key);
      report(error);
    }
  } finally {
    if (inFlight.get(slice.key) === controller) inFlight.delete(slice.key);
    pump();
  }
}

function remember(key, frame) {
  cache.set(key, frame);
  cacheBytes += frame.pixels.byteLength;
  evict();
}

/** Over budget: drop other series' frames first, then this series' farthest ones. */
function evict() {
  const prefix = `${current.uid}/`;
  while (cacheBytes > CACHE_BUDGET) {
    const victim = evictionVictim(cache, prefix, state.index);
    if (victim === null) return;
    cacheBytes -= cache.get(victim).pixels.byteLength;
    cache.delete(victim);
  }
}

/** Forget the old plan; stop fetching what belongs neither to `record` nor to a thumbnail. */
export function abortOthers(record) {
  queue = [];
  queueCursor = 0;
  urgentCount = 0;
  for (const [key, controller] of inFlight) {
    if (!key.startsWith(`${record.uid}/`) && !thumbJobs.has(key)) {
      controller.abort();
      inFlight.delete(key);
    }
  }
}

/** Fetch `slice` for `record`'s thumbnail, which is drawn when it arrives. */
export function awaitThumbnail(record, slice) {
  thumbJobs.set(slice.key, { record, slice });
  plan();
}

/** Stop every fetch for good (the page is going away). */
export function stopFetching() {
  queue = [];
  for (const controller of inFlight.values()) controller.abort();
  inFlight.clear();
}

function frameArrived(slice, frame) {
  const job = thumbJobs.get(slice.key);
  if (job) {
    thumbJobs.delete(slice.key);
    drawThumb(job.record, frame);
  }
  if (slice.key === currentSlice()?.key) requestDraw();
}
