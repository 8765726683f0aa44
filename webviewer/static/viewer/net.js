/*
 * Requests to the server: same-origin fetches that turn a lost session, an HTTP error or
 * an unreadable body into an Error with a message for the user (aborts pass through).
 */

/** The response to GET `url`; `what` names it in the error messages. */
export async function get(url, what, signal) {
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin", redirect: "manual", signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error(`Could not load ${what}: the server did not answer.`);
  }
  if (response.type === "opaqueredirect" || response.status === 401) {
    throw new Error("Your session has ended. Reload the page to log in again.");
  }
  if (!response.ok) throw new Error(`Could not load ${what} (HTTP ${response.status}).`);
  return response;
}

/** The JSON body of GET `url`. */
export async function getJson(url, what, signal) {
  const response = await get(url, what, signal);
  try {
    return await response.json();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error(`Could not read ${what}.`);
  }
}
