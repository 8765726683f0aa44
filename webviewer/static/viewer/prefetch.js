/*
 * The frame cache and the prefetcher: decoded frames stay in a bounded cache as typed
 * arrays; at most MAX_IN_FLIGHT requests run at once, in the order slices.js gives
 * around the slices the shown viewports show (the active one first); thumbnails wait
 * here for their slice. A preview (when transfer.js delivers one first) is kept until
 * its full frame arrives. Each arriving frame leaves its plane on its slice, so linking
 * and reference lines know where a slice lies after its frame is evicted.
 */
import { report, state } from "./context.js";
import { decodeFrame } from "./frames.js";
import { fetchFrame } from "./transfer.js";
import { planeOf } from "./planes.js";
import { evictionVictim, fetchPlan } from "./slices.js";
import { cine } from "./cine.js";
import { requestDraw } from "./draw.js";
import { frameArrivedFor } from "./linking.js";
import { drawThumb } from "./series.js";
import { active, shownViewports, sliceOf } from "./viewports.js";

const MAX_IN_FLIGHT = 4;
const CACHE_BUDGET = 768 * 2 ** 20;          // bytes of samples kept in the browser
const BACKGROUND_LIMIT = 0.9 * CACHE_BUDGET;  // no background prefetch above this

export const cache = new Map();    // slice key -> frame, oldest first
export const previews = new Map(); // slice key -> preview frame, until the full one arrives
const inFlight = new Map();        // slice key -> AbortController
const failed = new Set();          // slice keys whose fetch failed (not retried)
const thumbJobs = new Map();       // slice key -> { record, slice } waiting for its thumbnail
let cacheBytes = 0;
let queue = [];                    // slices to fetch, most urgent first
let urgentCount = 0;               // queue[0..urgentCount) is fetched even when the cache is full
let queueCursor = 0;

function viewsToFetch() {
  const shown = shownViewports().filter((vp) => vp.record?.slices?.length);
  shown.sort((a, b) => (b === active) - (a === active));
  return shown;
}

/** Order the fetches around the shown slices: theirs, thumbnails, then the rest. */
export function plan() {
  const views = viewsToFetch().map((vp) => ({
    slices: vp.record.slices,
    index: vp.index,
    looping: cine.playing && vp === active,
  }));
  const thumbs = [...thumbJobs.values()].map((job) => job.slice);
  ({ queue, urgentCount } = fetchPlan(views, thumbs));
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

function decode(slice, headers, buffer) {
  const frame = decodeFrame(headers, buffer);
  frame.position = slice.position;
  return frame;
}

/** A preview of `slice`: shown, scaled to the full size, until the full frame arrives. */
function previewArrived(slice, headers, buffer) {
  if (cache.has(slice.key)) return;
  try {
    const frame = decode(slice, headers, buffer);
    frame.preview = true;
    frame.fullRows = slice.rows || frame.rows;
    frame.fullCols = slice.cols || frame.cols;
    previews.set(slice.key, frame);
    redrawShowing(slice);
  } catch (error) {
    report(error);
  }
}

async function fetchSlice(slice) {
  const controller = new AbortController();
  inFlight.set(slice.key, controller);
  state.frameRequests += 1;
  const onPreview = (headers, buffer) => previewArrived(slice, headers, buffer);
  try {
    const { headers, buffer } = await fetchFrame(slice.url, slice.name, controller.signal, onPreview);
    const frame = decode(slice, headers, buffer);
    slice.plane = planeOf(frame);
    previews.delete(slice.key);
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

/** Over budget: drop unshown series' frames first, then those farthest from a shown slice. */
function evict() {
  const views = viewsToFetch().map((vp) => ({ prefix: `${vp.record.uid}/`, index: vp.index }));
  while (cacheBytes > CACHE_BUDGET) {
    const victim = evictionVictim(cache, views);
    if (victim === null) return;
    cacheBytes -= cache.get(victim).pixels.byteLength;
    cache.delete(victim);
  }
}

/** Forget the old plan; stop fetching what no shown viewport and no thumbnail needs. */
export function abortUnused() {
  queue = [];
  queueCursor = 0;
  urgentCount = 0;
  const prefixes = viewsToFetch().map((vp) => `${vp.record.uid}/`);
  for (const [key, controller] of inFlight) {
    if (!prefixes.some((prefix) => key.startsWith(prefix)) && !thumbJobs.has(key)) {
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

function redrawShowing(slice) {
  for (const vp of shownViewports()) if (sliceOf(vp)?.key === slice.key) requestDraw(vp);
}

function frameArrived(slice, frame) {
  const job = thumbJobs.get(slice.key);
  if (job) {
    thumbJobs.delete(slice.key);
    drawThumb(job.record, frame);
  }
  redrawShowing(slice);
  frameArrivedFor(slice);
}
