/*
 * A study's series and slices (pure, no DOM): a series' fields and labels from its DICOM
 * JSON, its instances as slices (instance x frame, in display order) with their frame
 * URLs (an instance without Rows is a document: one slice, no frames), the order in
 * which slices are fetched around the slices the viewports show, and which cached frame
 * is dropped first when the cache is over budget.
 */
import { number } from "./frames.js";

/** The first value of a DICOM JSON attribute, or `fallback`. */
export function attr(dataset, tag, fallback) {
  return dataset[tag]?.Value?.[0] ?? fallback;
}

/** A series' UID, number, modality, description and image count from its QIDO-RS JSON. */
export function seriesFields(json) {
  return {
    uid: String(attr(json, "0020000E", "")),
    number: attr(json, "00200011", ""),
    modality: attr(json, "00080060", ""),
    description: attr(json, "0008103E", ""),
    images: attr(json, "00201209", 0),
  };
}

/** "S2 · CT": the thumbnail's title. */
export function seriesTitle(record) {
  return [record.number && `S${record.number}`, record.modality].filter(Boolean).join(" · ");
}

/** "Series 2 · AXIAL": the overlay's line. */
export function seriesCaption(record) {
  return [record.number && `Series ${record.number}`, record.description].filter(Boolean).join(" · ");
}

/** "40 images", or "1 image, 20 frames" once the frames are known and differ. */
export function countText(images, frames) {
  const imageText = `${images} image${images === 1 ? "" : "s"}`;
  return frames === null || frames === images ? imageText : `${imageText}, ${frames} frames`;
}

/** The slices of `record`'s `instances`, whose frames are under `seriesUrl`. */
export function toSlices(record, instances, seriesUrl) {
  const series = record.number ? `series ${record.number}` : "this series";
  const slices = [];
  for (const instance of instances) {
    const sop = String(attr(instance, "00080018", ""));
    const rows = number(attr(instance, "00280010", null), null);
    const cols = number(attr(instance, "00280011", null), null);
    const document = rows === null;
    const frames = document ? 1 : Math.max(1, number(attr(instance, "00280008", 1), 1));
    const base = `${seriesUrl}/instances/${encodeURIComponent(sop)}/frames/`;
    for (let n = 1; n <= frames; n += 1) {
      const position = slices.length;
      const name = `${document ? "object" : "image"} ${position + 1} of ${series}`;
      slices.push({ key: `${record.uid}/${sop}/${n}`, url: base + n, sop, position, name, rows, cols, document });
    }
  }
  return slices;
}

// ---------------------------------------------------------------- prefetch order and eviction

export const AHEAD = 10;
export const BEHIND = 5;

/**
 * The fetch order around slice `index`: AHEAD ahead and BEHIND behind (wrapping round when
 * `looping`, as cine does), then `extra` (thumbnails' slices) — the urgent part, its length
 * `urgentCount` — then the rest of the series, ahead first, nearest first.
 */
export function fetchOrder(slices, index, looping, extra = []) {
  const n = slices.length;
  const at = (j) => (looping ? slices[((j % n) + n) % n] : slices[j]);
  const urgent = [];
  for (let d = 0; d <= AHEAD; d += 1) urgent.push(at(index + d));
  for (let d = 1; d <= BEHIND; d += 1) urgent.push(at(index - d));
  urgent.push(...extra);
  const rest = [];
  for (let j = index + AHEAD + 1; j < n; j += 1) rest.push(slices[j]);
  for (let j = index - BEHIND - 1; j >= 0; j -= 1) rest.push(slices[j]);
  const queue = urgent.filter(Boolean);
  return { queue: queue.concat(rest), urgentCount: queue.length };
}

/**
 * The fetch order for the viewports' `views` ([{ slices, index, looping }], the active one
 * first): each view's urgent part (fetchOrder's) in turn, then `extra`, then the rest of
 * each view's series. Document slices are never fetched.
 */
export function fetchPlan(views, extra = []) {
  const urgent = [];
  const rest = [];
  for (const view of views) {
    const { queue, urgentCount } = fetchOrder(view.slices, view.index, view.looping);
    urgent.push(...queue.slice(0, urgentCount));
    rest.push(...queue.slice(urgentCount));
  }
  urgent.push(...extra);
  const keep = (slice) => !slice.document;
  const queue = urgent.filter(keep);
  return { queue: queue.concat(rest.filter(keep)), urgentCount: queue.length };
}

/**
 * The key of the frame to drop from `cache` (slice key -> frame, oldest first): one of a
 * series no view shows (`views`: [{ prefix, index }], a key prefix and the shown slice)
 * first, else the one farthest from the shown slice of its series beyond AHEAD; null
 * when every frame is nearer than that.
 */
export function evictionVictim(cache, views) {
  let victim = null;
  let farthest = AHEAD;
  for (const [key, frame] of cache) {
    let distance = Infinity;
    for (const view of views) {
      if (key.startsWith(view.prefix)) distance = Math.min(distance, Math.abs(frame.position - view.index));
    }
    if (distance > farthest) {
      victim = key;
      farthest = distance;
      if (distance === Infinity) break;
    }
  }
  return victim;
}
