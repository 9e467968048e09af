// The ticket book: this phone's copy of the event (tickets, keys, admissions) and the verdicts it can give
// without the server. The rules mirror the service's (checkin/domain.py: decide and decide_room).

import { check, decode, importKeys } from "/static/js/ticketcode.js";
import * as db from "./db.js";

const VENUE = "venue";

function roomPlace(session) {
  return `room:${session}`;
}

/** Name, organisation and query reduced for matching: no accents, apostrophes or case. */
export function folded(text) {
  return String(text ?? "")
    .normalize("NFD")
    .replace(/\p{M}/gu, "")
    .replace(/['’‘`]/g, "")
    .replace(/[-‐–]/g, " ")
    .toLocaleLowerCase("en-GB");
}

/** The ticket id of a code, if it decodes at all; never trusted for anything but bookkeeping. */
export function ticketIdOf(text) {
  try {
    return decode(text).ticketId;
  } catch {
    return null;
  }
}

function earlier(a, b) {
  if (!a?.first_at) return b?.first_at ? b : null;
  if (!b?.first_at) return a;
  return Date.parse(a.first_at) <= Date.parse(b.first_at) ? a : b;
}

export class TicketBook {
  constructor() {
    this.record = null;
    this.keys = new Map();
    this.keySignature = "";
    this.barred = new Set();
    this.movements = new Map();
  }

  get loaded() {
    return this.record !== null;
  }

  get version() {
    return this.record?.version ?? 0;
  }

  get event() {
    return this.record?.event ?? null;
  }

  get sessions() {
    return this.event?.sessions ?? [];
  }

  get ticketCount() {
    return this.record ? Object.keys(this.record.tickets).length : 0;
  }

  get fetchedAt() {
    return this.record?.fetched_at ?? null;
  }

  /** Reads what the phone kept from an earlier visit, for the event this phone is enrolled for. */
  async load(eventId) {
    this.eventId = eventId;
    const record = await db.get(db.SNAPSHOT, eventId);
    const movements = (await db.all(db.MOVEMENTS)).filter((m) => m.event_id === eventId);
    this.movements = new Map(movements.map((m) => [m.key, m]));
    if (record) await this.#adopt(record);
  }

  /** Applies a snapshot reply: a complete one replaces the copy, a delta is merged into it. */
  async apply(reply) {
    const base = this.record && this.record.event_id === reply.event_id ? this.record : null;
    if (!reply.complete && !base) throw new Error("a delta needs a complete snapshot first");
    const tickets = reply.complete ? {} : { ...base.tickets };
    const revocations = new Set(reply.complete ? [] : base.revocations);
    for (const ticket of reply.tickets ?? []) {
      tickets[ticket.ticket_id] = ticket;
      revocations.delete(ticket.ticket_id);
    }
    for (const ticketId of reply.revocations ?? []) revocations.add(ticketId);
    const record = {
      event_id: reply.event_id,
      version: reply.version,
      event: reply.event ?? base?.event ?? null,
      keys: reply.keys?.length ? reply.keys : (base?.keys ?? []),
      tickets,
      revocations: [...revocations],
      admissions: {
        ...(reply.complete ? {} : base.admissions),
        ...Object.fromEntries((reply.admissions ?? []).map((a) => [a.ticket_id, a])),
      },
      fetched_at: Date.now(),
    };
    await db.put(db.SNAPSHOT, record);
    await this.#adopt(record);
  }

  async #adopt(record) {
    const signature = record.keys.map((k) => `${k.key_id}:${k.public_key}`).sort().join(",");
    if (signature !== this.keySignature) {
      this.keys = await importKeys(record.keys);
      this.keySignature = signature;
    }
    this.barred = new Set(record.revocations);
    for (const ticket of Object.values(record.tickets)) {
      if (ticket.status !== "valid") this.barred.add(ticket.ticket_id);
    }
    this.record = record;
  }

  ticket(ticketId) {
    return this.record?.tickets[ticketId] ?? null;
  }

  /** Where a ticket holder stands at a place: the snapshot's word, overridden by this phone's newer scans. */
  standing(ticketId, place = VENUE) {
    const shared = place === VENUE ? (this.record?.admissions[ticketId] ?? null) : null;
    const local = this.movements.get(this.#key(ticketId, place)) ?? null;
    const first = earlier(shared, local);
    if (!first) return null;
    const localIsNewer = local && (!shared || local.changed_at > (this.fetchedAt ?? 0));
    return {
      first_at: first.first_at,
      first_gate: first.first_gate,
      inside: localIsNewer ? local.inside : Boolean(shared?.inside),
    };
  }

  #key(ticketId, place) {
    return `${this.eventId}|${place}|${ticketId}`;
  }

  /** Remembers a verdict's effect on where the holder is, whoever decided it (server or phone). */
  async remember(ticketId, verdict, { gate, session = null, at = new Date().toISOString(), firstAdmitted = null }) {
    if (!ticketId || !["admitted", "already_admitted", "exited"].includes(verdict)) return;
    const place = session ? roomPlace(session) : VENUE;
    const key = this.#key(ticketId, place);
    const known = this.movements.get(key);
    const movement = {
      key,
      event_id: this.eventId,
      ticket_id: ticketId,
      place,
      first_at: known?.first_at ?? null,
      first_gate: known?.first_gate ?? null,
      inside: verdict !== "exited",
      changed_at: Date.now(),
    };
    const first = firstAdmitted ?? (verdict === "admitted" ? { at, gate } : null);
    if (first && (!movement.first_at || Date.parse(first.at) < Date.parse(movement.first_at))) {
      movement.first_at = first.at;
      movement.first_gate = first.gate;
    }
    this.movements.set(key, movement);
    await db.put(db.MOVEMENTS, movement);
  }

  /**
   * The verdict this phone gives on its own: the code's signature and event from the keys, the ticket's
   * status from the ticket list, and admissions from the snapshot plus this phone's own scans.
   */
  async judge(text, { direction, session = null }) {
    if (!this.record || this.keys.size === 0) return { verdict: "cannot_check" };
    const result = await check(text, this.eventId, this.keys, this.barred);
    const ticketId = result.ticket?.ticket_id ?? null;
    const genuine = result.verdict === "valid" || result.verdict === "revoked";
    if (!genuine) return { verdict: result.verdict };
    const ticket = this.ticket(ticketId);
    const attendee = { name: ticket?.name ?? "", ticket_type: ticket?.ticket_type ?? result.ticket.ticket_type };
    // A genuine code missing from the list was most likely issued after the last update: its signature
    // proves it was issued, so it admits, with a note for the door staff.
    const outcome = { ticket_id: ticketId, attendee, unlisted: !ticket };
    const place = session ? roomPlace(session) : VENUE;
    const standing = this.standing(ticketId, place);
    if (session) {
      if (direction === "out") return { ...outcome, verdict: "exited" };
      if (result.verdict === "revoked") return { ...outcome, verdict: "revoked" };
      if (ticket && !(ticket.sessions ?? []).includes(session)) return { ...outcome, verdict: "not_entitled" };
      if (standing) return { ...outcome, verdict: "already_admitted", first_admitted: firstOf(standing) };
      return { ...outcome, verdict: "admitted" };
    }
    if (direction === "out") {
      // Leaving is never refused.
      if (standing?.inside) return { ...outcome, verdict: "exited" };
      return { ...outcome, verdict: result.verdict === "revoked" ? "revoked" : "exited" };
    }
    if (result.verdict === "revoked") return { ...outcome, verdict: "revoked" };
    if (!standing) return { ...outcome, verdict: "admitted" };
    if (standing.inside) return { ...outcome, verdict: "already_admitted", first_admitted: firstOf(standing) };
    return { ...outcome, verdict: "admitted" };
  }

  /** Tickets whose holder's name or organisation matches every word of the query. */
  search(query, limit = 25) {
    const words = folded(query).split(/\s+/).filter(Boolean);
    if (!this.record || words.length === 0) return { matches: [], total: 0 };
    const found = Object.values(this.record.tickets).filter((ticket) => {
      const haystack = `${folded(ticket.name)} ${folded(ticket.organisation)}`;
      return words.every((word) => haystack.includes(word));
    });
    found.sort((a, b) => a.name.localeCompare(b.name, "en-GB") || a.ticket_id.localeCompare(b.ticket_id));
    return {
      total: found.length,
      matches: found.slice(0, limit).map((ticket) => ({ ...ticket, standing: this.standing(ticket.ticket_id) })),
    };
  }

  async forget() {
    await db.clear(db.SNAPSHOT);
    await db.clear(db.MOVEMENTS);
    this.record = null;
    this.keys = new Map();
    this.keySignature = "";
    this.barred = new Set();
    this.movements = new Map();
  }
}

function firstOf(standing) {
  return { at: standing.first_at, gate: standing.first_gate };
}

/** Scans this phone decided offline, kept in order until the server has them. */
export const queue = {
  add: (entry) => db.put(db.QUEUE, entry),
  entries: () => db.all(db.QUEUE),
  length: () => db.count(db.QUEUE),
  done: (seq) => db.remove(db.QUEUE, seq),
  clear: () => db.clear(db.QUEUE),
};
