/*
 * The study's series: one button per series with a thumbnail of its middle slice (drawn
 * one series at a time once the first image is shown), which series is shown, its slices
 * (loaded once, from the preloaded list when the page has it), and which slice is shown,
 * with the slider and labels that follow it.
 */
import { el, preload, report, state, urls } from "./context.js";
import { aspect } from "./frames.js";
import { getJson } from "./net.js";
import { countText, seriesCaption, seriesFields, seriesTitle, toSlices } from "./slices.js";
import { stopCine } from "./cine.js";
import { renderTo, requestDraw, resetDisplay } from "./draw.js";
import { abortOthers, awaitThumbnail, cache, plan } from "./prefetch.js";
import { scheduleTags } from "./tags.js";
import { clearMeasurement } from "./tools.js";

const THUMB_SIZE = 96;

export const records = [];
export let current = null;

function seriesUrl(record) {
  return `${urls.root}/series/${encodeURIComponent(record.uid)}`;
}

/** Add a series (its QIDO-RS JSON) to the list, as a button that shows it. */
export function addSeries(json) {
  const { images, ...fields } = seriesFields(json);
  const record = { ...fields, slices: null, loading: null };
  const button = document.createElement("button");
  button.type = "button";
  button.className = "series-thumb";
  button.dataset.series = record.uid;
  button.setAttribute("aria-pressed", "false");
  record.canvas = document.createElement("canvas");
  record.canvas.width = THUMB_SIZE;
  record.canvas.height = THUMB_SIZE;
  record.count = textSpan("series-count", countText(images, null));
  button.append(
    record.canvas,
    textSpan("series-title", seriesTitle(record)),
    textSpan("series-desc", record.description),
    record.count,
  );
  button.addEventListener("click", () => selectSeries(record).catch(report));
  record.button = button;
  el.seriesList.append(button);
  records.push(record);
}

function textSpan(className, text) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = String(text ?? "");
  return span;
}

/** The series' slices (instance × frame, in display order), loaded once. */
export function loadSlices(record) {
  if (record.loading) return record.loading;
  const preloaded = preload.instances?.[record.uid];
  const instances = preloaded
    ? Promise.resolve(preloaded)
    : getJson(`${seriesUrl(record)}/instances`, "the image list");
  record.loading = instances.then(
    (instances) => {
      record.slices = toSlices(record, instances, seriesUrl(record));
      record.count.textContent = countText(instances.length, record.slices.length);
      return record.slices;
    },
    (error) => {
      record.loading = null;
      throw error;
    },
  );
  return record.loading;
}

/** Show `record`'s first slice (after loading its slices), with the image's own window. */
export async function selectSeries(record) {
  if (current === record && record.loading) return;
  stopCine();
  current = record;
  state.seriesUid = record.uid;
  for (const other of records) other.button.setAttribute("aria-pressed", String(other === record));
  el.ovSeries.textContent = seriesCaption(record);
  resetDisplay();
  clearMeasurement();
  abortOthers(record);
  setTotal(0);
  requestDraw();
  const slices = await loadSlices(record);
  if (current !== record) return;
  if (slices.length === 0) throw new Error("This series has no images.");
  setTotal(slices.length);
  showSlice(0, true);
}

function setTotal(total) {
  state.total = total;
  state.index = 0;
  el.slider.max = String(Math.max(total, 1));
  el.slider.disabled = total < 2;
  el.cine.disabled = total < 2;
  updateSliceLabels();
}

/** The shown slice, or null. */
export function currentSlice() {
  return current?.slices?.[state.index] ?? null;
}

/** The shown slice's frame when it is in the cache, or null. */
export function currentFrame() {
  const slice = currentSlice();
  return slice ? cache.get(slice.key) ?? null : null;
}

/** Show slice `index` (clamped to the series); `force` even when it is already shown. */
export function showSlice(index, force = false) {
  if (!state.total) return;
  const next = Math.min(state.total - 1, Math.max(0, index));
  if (next === state.index && !force) return;
  state.index = next;
  clearMeasurement();
  updateSliceLabels();
  plan();
  requestDraw();
  scheduleTags();
}

function updateSliceLabels() {
  const text = `${state.total ? state.index + 1 : 0} / ${state.total}`;
  el.slider.value = String(state.index + 1);
  el.frameLabel.textContent = text;
  el.ovSlice.textContent = state.total ? `Image ${text}` : "";
}

// ---------------------------------------------------------------- thumbnails

const thumbScratch = document.createElement("canvas");

/** One thumbnail per series, from its middle slice, one series at a time. */
export async function loadThumbnails() {
  for (const record of records) {
    try {
      const slices = await loadSlices(record);
      const slice = slices[Math.floor(slices.length / 2)];
      if (!slice) continue;
      const frame = cache.get(slice.key);
      if (frame) {
        drawThumb(record, frame);
      } else {
        awaitThumbnail(record, slice);
      }
    } catch (error) {
      report(error);
    }
  }
}

/** Draw `frame` into `record`'s thumbnail, fitted and centred on black. */
export function drawThumb(record, frame) {
  renderTo(thumbScratch, frame, frame.window, false);
  const ctx = record.canvas.getContext("2d");
  const scale = Math.min(THUMB_SIZE / frame.cols, THUMB_SIZE / (frame.rows * aspect(frame)));
  const w = frame.cols * scale;
  const h = frame.rows * aspect(frame) * scale;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, THUMB_SIZE, THUMB_SIZE);
  ctx.drawImage(thumbScratch, (THUMB_SIZE - w) / 2, (THUMB_SIZE - h) / 2, w, h);
}
