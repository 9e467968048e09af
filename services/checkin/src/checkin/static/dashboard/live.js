// Live attendance: the Server-Sent Events stream read with fetch (EventSource cannot send the
// organiser token), reconnecting with backoff; polling every 2 s where the server has no stream.

import { Refused, Unreachable } from "/static/js/api.js";
import { isSignedOut } from "./api.js";

export const POLL_MS = 2000;
// The server sends a keep-alive comment every 15 s; silence for much longer means a dead connection.
const SILENCE_MS = 35000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30000;

/**
 * Splits a Server-Sent Events byte stream (as text) into messages.
 * `push` takes each chunk as it arrives and returns the messages it completed: {event, data}.
 */
export class FrameParser {
  constructor() {
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
  }

  push(chunk) {
    this.buffer += chunk;
    const messages = [];
    // A lone CR at the very end may be the first half of a CRLF: wait for the next chunk.
    const end = this.buffer.endsWith("\r") ? this.buffer.length - 1 : this.buffer.length;
    const pattern = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = pattern.exec(this.buffer)) !== null && match.index < end) {
      this.line(this.buffer.slice(start, match.index), messages);
      start = match.index + match[0].length;
    }
    this.buffer = this.buffer.slice(start);
    return messages;
  }

  line(text, messages) {
    if (text === "") {
      if (this.data.length) messages.push({ event: this.event || "message", data: this.data.join("\n") });
      this.reset();
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
  }
}

/** Wait `ms`, or less if `wake` is called (the network came back) or `signal` aborts. */
function pause(ms, signal) {
  let wake;
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
    signal.addEventListener("abort", wake, { once: true });
  });
  return { done, wake };
}

/**
 * Follows one event's attendance for as long as it runs.
 * Callbacks: onState(attendance), onStatus("connecting" | "live" | "polling" | "reconnecting"),
 * onSignedOut(error) when the token is refused (the feed then stops).
 */
export class AttendanceFeed {
  constructor(client, { onState, onStatus, onSignedOut }) {
    this.client = client;
    this.onState = onState;
    this.onStatus = onStatus;
    this.onSignedOut = onSignedOut;
    this.stopping = new AbortController();
    this.waiting = null;
    this.retryNow = () => this.waiting?.wake();
  }

  start() {
    window.addEventListener("online", this.retryNow);
    this.run();
  }

  stop() {
    window.removeEventListener("online", this.retryNow);
    this.stopping.abort();
  }

  get stopped() {
    return this.stopping.signal.aborted;
  }

  status(value) {
    if (!this.stopped) this.onStatus(value);
  }

  async run() {
    this.status("connecting");
    let attempt = 0;
    while (!this.stopped) {
      try {
        const outcome = await this.follow(() => {
          attempt = 0;
        });
        if (outcome === "missing") return this.poll();
      } catch (error) {
        if (isSignedOut(error)) {
          this.signedOut(error);
          return;
        }
        if (!(error instanceof Unreachable) && !(error instanceof Refused) && !this.stopped) {
          console.warn("attendance stream failed", error?.name ?? "error");
        }
      }
      if (this.stopped) return;
      this.status("reconnecting");
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt) * (0.8 + Math.random() * 0.4);
      attempt += 1;
      this.waiting = pause(delay, this.stopping.signal);
      await this.waiting.done;
      this.waiting = null;
    }
  }

  /** Reads the stream until it ends; "missing" when this server has no stream to offer. */
  async follow(onMessage) {
    const connection = new AbortController();
    const abort = () => connection.abort();
    this.stopping.signal.addEventListener("abort", abort, { once: true });
    let silence = null;
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(abort, SILENCE_MS);
    };
    try {
      heard();
      const response = await this.client.stream(connection.signal);
      if ([404, 405, 501].includes(response.status)) return "missing";
      if (response.status === 401 || response.status === 403) {
        throw new Refused(response.status, "unauthenticated", "The organiser token was refused.");
      }
      if (!response.ok || !response.body) throw new Unreachable(`stream answered ${response.status}`);
      if (!(response.headers.get("Content-Type") ?? "").includes("text/event-stream")) return "missing";
      const parser = new FrameParser();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          let chunk;
          try {
            chunk = await reader.read();
          } catch (error) {
            throw new Unreachable("stream interrupted", { cause: error });
          }
          if (chunk.done) return "ended";
          heard();
          for (const message of parser.push(chunk.value)) {
            if (message.event !== "attendance") continue;
            let state;
            try {
              state = JSON.parse(message.data);
            } catch {
              continue;
            }
            onMessage();
            this.status("live");
            this.onState(state);
          }
        }
      } finally {
        reader.cancel().catch(() => {});
      }
    } finally {
      clearTimeout(silence);
      this.stopping.signal.removeEventListener("abort", abort);
      connection.abort();
    }
  }

  /** The fallback: read the attendance every POLL_MS. */
  async poll() {
    while (!this.stopped) {
      try {
        this.onState(await this.client.attendance());
        this.status("polling");
      } catch (error) {
        if (isSignedOut(error)) {
          this.signedOut(error);
          return;
        }
        this.status("reconnecting");
      }
      this.waiting = pause(POLL_MS, this.stopping.signal);
      await this.waiting.done;
      this.waiting = null;
    }
  }

  signedOut(error) {
    if (this.stopped) return;
    this.stop();
    this.onSignedOut(error);
  }
}
