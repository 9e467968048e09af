// The checkin API as the organiser's dashboard uses it. The organiser token goes in every call's
// Authorization header and nowhere else: never in a URL, a log or the page.

/** The server refused the call; `status` and the stable `code` say why. */
export class Refused extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

/** No answer, or a server that is not working: worth trying again later. */
export class Unreachable extends Error {}

const DEADLINE_MS = 15000;

export class Organiser {
  constructor(eventId, token) {
    this.eventId = eventId;
    this.token = token;
    this.base = `/api/v1/events/${encodeURIComponent(eventId)}`;
  }

  headers(accept = "application/json") {
    return { Accept: accept, Authorization: `Bearer ${this.token}` };
  }

  /** A raw fetch with the token and a deadline; `signal` (optional) also cancels it. */
  async fetch(path, { method = "GET", body, accept, signal, deadline = DEADLINE_MS } = {}) {
    const controller = new AbortController();
    const cancel = () => controller.abort();
    signal?.addEventListener("abort", cancel, { once: true });
    const timer = deadline ? setTimeout(cancel, deadline) : null;
    const headers = this.headers(accept);
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      return await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new Unreachable(controller.signal.aborted ? "no answer in time" : "network unavailable", { cause: error });
    } finally {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", cancel);
    }
  }

  async call(path, options = {}) {
    const response = await this.fetch(path, options);
    return read(response, options.accept === "text/csv" ? "blob" : "json");
  }

  attendance() {
    return this.call(`${this.base}/attendance`);
  }

  /** The stream's response itself: the caller reads its body as it arrives. */
  stream(signal) {
    return this.fetch(`${this.base}/attendance/stream`, { accept: "text/event-stream", signal, deadline: 0 });
  }

  snapshot(since = 0) {
    return this.call(`${this.base}/snapshot${since > 0 ? `?since=${encodeURIComponent(since)}` : ""}`, { deadline: 30000 });
  }

  scans(limit = 20) {
    return this.call(`${this.base}/scans?limit=${encodeURIComponent(limit)}`);
  }

  alerts() {
    return this.call(`${this.base}/alerts`);
  }

  noShows() {
    return this.call(`${this.base}/no-shows`);
  }

  noShowsCsv() {
    return this.call(`${this.base}/no-shows`, { accept: "text/csv", deadline: 60000 });
  }

  devices() {
    return this.call(`${this.base}/devices`);
  }

  createDevice(name, gates) {
    return this.call(`${this.base}/devices`, { method: "POST", body: { name, gates } });
  }

  revokeDevice(deviceId) {
    return this.call(`/api/v1/devices/${encodeURIComponent(deviceId)}/revoke`, { method: "POST" });
  }
}

async function read(response, as) {
  if (response.status >= 500) throw new Unreachable(`server error ${response.status}`);
  if (!response.ok) {
    let data = null;
    try {
      data = await response.json();
    } catch {
      // A reply without a JSON body still has its status.
    }
    throw new Refused(response.status, data?.code ?? `http_${response.status}`, data?.message ?? "");
  }
  try {
    return as === "blob" ? await response.blob() : await response.json();
  } catch (error) {
    throw new Unreachable("unreadable answer", { cause: error });
  }
}

export function isSignedOut(error) {
  return error instanceof Refused && (error.status === 401 || error.status === 403);
}
