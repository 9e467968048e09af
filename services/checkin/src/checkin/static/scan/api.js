// Calls to the checkin API. Every call has a deadline: at a venue door a hung request is worse than none.

/** The server answered, and said no (4xx): its stable `code` says why. */
export class Refused extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

/** No answer in time, no network, or a server that is not working (5xx): treat as offline. */
export class Unreachable extends Error {}

export const SCAN_DEADLINE_MS = 1500;
const DEFAULT_DEADLINE_MS = 10000;

export async function call(path, { method = "GET", token = null, body = undefined, deadline = DEFAULT_DEADLINE_MS } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), deadline);
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new Unreachable(controller.signal.aborted ? "no answer in time" : "network unavailable", { cause: error });
    }
    if (response.status >= 500) throw new Unreachable(`server error ${response.status}`);
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      if (controller.signal.aborted) throw new Unreachable("no answer in time", { cause: error });
      if (response.ok) throw new Unreachable("unreadable answer", { cause: error });
    }
    if (!response.ok) {
      throw new Refused(response.status, data?.code ?? `http_${response.status}`, data?.message ?? "");
    }
    return data;
  } finally {
    clearTimeout(timer);
  }
}

export function enrol(enrolmentCode) {
  return call("/api/v1/devices/enrol", { method: "POST", body: { enrolment_code: enrolmentCode } });
}

export function me(token) {
  return call("/api/v1/devices/me", { token, deadline: 5000 });
}

export function scan(device, body, deadline = SCAN_DEADLINE_MS) {
  return call(`/api/v1/events/${encodeURIComponent(device.event_id)}/scans`, {
    method: "POST",
    token: device.token,
    body,
    deadline,
  });
}

export function snapshot(device, since) {
  const query = since > 0 ? `?since=${encodeURIComponent(since)}` : "";
  return call(`/api/v1/events/${encodeURIComponent(device.event_id)}/snapshot${query}`, {
    token: device.token,
    deadline: 20000,
  });
}

/** Cheap check that the server answers again. */
export async function reachable() {
  try {
    await call("/healthz", { deadline: SCAN_DEADLINE_MS });
    return true;
  } catch {
    return false;
  }
}
