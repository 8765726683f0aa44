/*
 * How a frame travels from the server: the one place that fetches a frame and hands
 * back its X- headers and raw samples, whatever encoding carried them.
 */

import { get } from "./net.js";

/** The headers and raw sample bytes of the frame at `url`; `what` names it in errors. */
export async function fetchFrame(url, what, signal) {
  const response = await get(url, what, signal);
  return { headers: response.headers, buffer: await response.arrayBuffer() };
}
