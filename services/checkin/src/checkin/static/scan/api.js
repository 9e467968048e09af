// Calls to the checkin API. Every call has a deadline: at a venue door a hung request is worse than none.

import { answer, request } from "/static/js/api.js";

export const SCAN_DEADLINE_MS = 1500;
const DEFAULT_DEADLINE_MS = 10000;

/** The reply's JSON body; the deadline covers reading it as well as the answer's arrival. */
export function call(path, { method = "GET", token = null, body = undefined, deadline = DEFAULT_DEADLINE_MS } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  return request(path, { method, headers, body, deadline, read: (response, signal) => answer(response, { signal }) });
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
