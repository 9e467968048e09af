// The checkin API as the organiser's dashboard uses it. The organiser token goes in every call's
// Authorization header and nowhere else: never in a URL, a log or the page.

import { Refused, answer, request } from "/static/js/api.js";

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
  fetch(path, { method = "GET", body, accept, signal, deadline = DEADLINE_MS } = {}) {
    return request(path, { method, headers: this.headers(accept), body, signal, deadline });
  }

  async call(path, options = {}) {
    const response = await this.fetch(path, options);
    return answer(response, { as: options.accept === "text/csv" ? "blob" : "json" });
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

export function isSignedOut(error) {
  return error instanceof Refused && (error.status === 401 || error.status === 403);
}
