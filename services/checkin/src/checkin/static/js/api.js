// How the door app and the dashboard call the checkin API: JSON over fetch, never cached, never with
// cookies, always with a deadline, and failures sorted into the two kinds a page acts on.

/** The server answered, and said no (4xx): `status` and the stable `code` say why. */
export class Refused extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

/** No answer in time, no network, or a server that is not working (5xx): worth trying again later. */
export class Unreachable extends Error {}

const asResponse = (response) => response;

/**
 * Sends one request and hands its response to `read`, which runs before the deadline is lifted.
 *
 * `deadline` is in milliseconds (0 for none); `signal`, if given, cancels the request too. `read`
 * gets the response and the request's own abort signal; with no `read`, the response itself is
 * the answer, and reading its body is no longer under the deadline, though `signal` still cuts it off
 * (a stream the caller gives up on).
 */
export async function request(
  path,
  { method = "GET", headers = {}, body = undefined, signal = undefined, deadline = 0, read = asResponse } = {},
) {
  const controller = new AbortController();
  const cancel = () => controller.abort();
  signal?.addEventListener("abort", cancel, { once: true });
  const timer = deadline ? setTimeout(cancel, deadline) : null;
  const sent = { Accept: "application/json", ...headers };
  if (body !== undefined) sent["Content-Type"] = "application/json";
  try {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new Unreachable(controller.signal.aborted ? "no answer in time" : "network unavailable", { cause: error });
    }
    return await read(response, controller.signal);
  } finally {
    if (timer) clearTimeout(timer);
    // A response handed back unread is still being read by the caller, who may yet cancel it.
    if (read !== asResponse) signal?.removeEventListener("abort", cancel);
  }
}

/**
 * The body of a successful reply, as JSON or (with `as: "blob"`) a Blob; a refusal or a server
 * fault becomes the matching error. `signal` tells a body cut off by the deadline from a garbled one.
 */
export async function answer(response, { as = "json", signal = undefined } = {}) {
  if (response.status >= 500) throw new Unreachable(`server error ${response.status}`);
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      // A reply without a JSON body still has its status.
      if (signal?.aborted) throw new Unreachable("no answer in time", { cause: error });
    }
    throw new Refused(response.status, data?.code ?? `http_${response.status}`, data?.message ?? "");
  }
  try {
    return as === "blob" ? await response.blob() : await response.json();
  } catch (error) {
    throw new Unreachable(signal?.aborted ? "no answer in time" : "unreadable answer", { cause: error });
  }
}
