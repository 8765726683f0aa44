/*
 * The study list's dates and times in the browser's locale.
 *
 * The server writes ISO 8601 values into <time datetime=...> elements (data-show "date" or
 * "datetime"); they are DICOM dates and times without a zone, so they are read and shown as
 * UTC: what the scanner wrote is what is shown, whatever the browser's zone.
 */

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})$/;

/** The moment an ISO date or date-time names, as a UTC Date, or null if it is not one. */
export function parseIso(value) {
  const match = DATETIME.exec(value) ?? DATE.exec(value);
  if (match === null) return null;
  const [year, month, day, hours = 0, minutes = 0, seconds = 0] = match.slice(1).map(Number);
  const moment = new Date(Date.UTC(year, month - 1, day, hours, minutes, seconds));
  const exact = moment.getUTCMonth() === month - 1 && moment.getUTCDate() === day && moment.getUTCHours() === hours;
  return exact && minutes < 60 && seconds < 60 ? moment : null;
}

/** `value` (ISO) as `locale` writes a date ("date") or a date and time ("datetime"); null if invalid. */
export function formatIso(value, show, locale) {
  const moment = parseIso(value);
  if (moment === null) return null;
  const style = show === "datetime" ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" };
  return new Intl.DateTimeFormat(locale, { ...style, timeZone: "UTC" }).format(moment);
}

/** Format every <time data-show> under `root`; the ISO value stays in its title. */
export function localise(root, locale) {
  for (const element of root.querySelectorAll("time[data-show]")) {
    const text = formatIso(element.dateTime, element.dataset.show, locale);
    if (text === null) continue;
    element.title = element.dateTime;
    element.textContent = text;
  }
}

if (typeof document !== "undefined") {
  localise(document, undefined);
  document.body.dataset.localised = "true";
}
