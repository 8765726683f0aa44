/*
 * The DICOM tags panel: the tags of the instance the active viewport shows (of its own
 * study, current or prior), loaded when the panel opens and shortly after the slice
 * changes while it is open, filtered as the user types.
 */
import { el, report } from "./context.js";
import { getJson } from "./net.js";
import { active, sliceOf } from "./viewports.js";

let tagsFor = null;
let tagsTimer = 0;
let tagsRequest = null;

export function toggleTags() {
  const open = el.tags.hidden;
  el.tags.hidden = !open;
  el.tagsToggle.setAttribute("aria-expanded", String(open));
  tagsFor = null;
  if (open) loadTags();
}

/** The slice changed: load its tags soon, if the panel is open and shows another instance's. */
export function scheduleTags() {
  if (el.tags.hidden || sliceOf(active)?.sop === tagsFor) return;
  clearTimeout(tagsTimer);
  tagsTimer = setTimeout(loadTags, 150);
}

/** Stop loading tags (the page is going away). */
export function abortTags() {
  tagsRequest?.abort();
}

async function loadTags() {
  const slice = sliceOf(active);
  if (!slice || el.tags.hidden) return;
  tagsFor = slice.sop;
  tagsRequest?.abort();
  tagsRequest = new AbortController();
  try {
    const url = `${active.record.study.pages}/instances/${encodeURIComponent(slice.sop)}/tags`;
    const rows = await getJson(url, "the tags", tagsRequest.signal);
    el.tagsBody.replaceChildren(...rows.map(tagRow));
    filterTags();
  } catch (error) {
    if (error.name === "AbortError") return;
    tagsFor = null;
    report(error);
  }
}

function tagRow(item) {
  const row = document.createElement("tr");
  for (const text of [item.tag, item.keyword, item.vr, item.value]) {
    const cell = document.createElement("td");
    cell.textContent = String(text ?? "");
    row.append(cell);
  }
  row.lastChild.title = String(item.value ?? "");
  return row;
}

/** Hide the rows that do not contain the filter's text. */
export function filterTags() {
  const query = el.tagsFilter.value.trim().toLowerCase();
  for (const row of el.tagsBody.rows) {
    row.hidden = query !== "" && !row.textContent.toLowerCase().includes(query);
  }
}
