// The organiser's live attendance dashboard for one event: /dashboard?event=<event id>.

import { Refused, Unreachable } from "/static/js/api.js";
import { Organiser, isSignedOut } from "./api.js";
import { drawArrivals } from "./chart.js";
import { DoorPhones, reason } from "./devices.js";
import { byId, h, setText } from "./dom.js";
import { clockSeconds, count, day, humanise, percent, phase, useTimeZone } from "./format.js";
import { AttendanceFeed } from "./live.js";
import { drawAlerts, drawBreakdown, drawNoShows, drawScans, rowsOf } from "./panels.js";

const TOKEN_KEY = "plenary.dashboard.organiser-token";
const DEVICES_EVERY_MS = 15000;
const LAST_SEEN_EVERY_MS = 30000;
// The no-show list can be long: read it at most this often while delegates pour in.
const NO_SHOWS_GAP_MS = 3000;

const STATUS_TEXT = {
  off: "Not connected",
  connecting: "Connecting…",
  live: "Live",
  polling: "Live (every 2 seconds)",
  reconnecting: "Reconnecting…",
};

const page = {
  client: null,
  feed: null,
  timers: [],
  attendance: null,
  tickets: new Map(),
  version: 0,
  event: null,
  devices: new Map(),
  phones: null,
};

/**
 * Runs `task` when triggered; triggers that arrive while it runs fold into one more run after it,
 * at least `gap` ms after the last one started.
 */
function refresher(task, gap = 0) {
  let running = false;
  let again = false;
  let last = 0;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        const wait = last + gap - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        last = Date.now();
        const client = page.client;
        if (!client) return;
        try {
          await task(client);
        } catch (error) {
          if (isSignedOut(error)) {
            signOut();
            return;
          }
          if (!(error instanceof Unreachable) && !(error instanceof Refused)) console.warn("refresh failed", error?.name);
        }
      } while (again && page.client);
    } finally {
      running = false;
    }
  };
  return run;
}

// ---- Sign-in -------------------------------------------------------------------------------

function eventFromAddress() {
  return (new URLSearchParams(location.search).get("event") ?? "").trim();
}

function showSignIn(message = "") {
  byId("content").hidden = true;
  byId("sign-out").hidden = true;
  byId("sign-in").hidden = false;
  byId("event-field").hidden = Boolean(eventFromAddress());
  byId("sign-in-message").textContent = message;
  setStatus("off");
  (eventFromAddress() ? byId("token") : byId("event-id")).focus();
}

async function signIn(event) {
  event.preventDefault();
  const message = byId("sign-in-message");
  const eventId = eventFromAddress() || byId("event-id").value.trim();
  const token = byId("token").value.trim();
  if (!eventId) {
    message.textContent = "Enter the event reference.";
    byId("event-id").focus();
    return;
  }
  if (!token) {
    message.textContent = "Paste the organiser token.";
    byId("token").focus();
    return;
  }
  message.textContent = "Checking…";
  try {
    await new Organiser(eventId, token).attendance();
  } catch (error) {
    message.textContent = refusal(error);
    byId("token").select();
    return;
  }
  byId("token").value = "";
  message.textContent = "";
  if (!eventFromAddress()) history.replaceState(null, "", `?event=${encodeURIComponent(eventId)}`);
  sessionStorage.setItem(TOKEN_KEY, token);
  start(eventId, token);
}

function refusal(error) {
  if (error instanceof Refused && error.status === 401) {
    return "That token was not accepted. Check you pasted the whole organiser token, then try again.";
  }
  if (error instanceof Refused && error.status === 403) {
    return "That is a door phone's token. The dashboard needs the organiser token.";
  }
  return `Could not sign in: ${reason(error)}`;
}

/** Forget the token and everything shown, and ask for the token again. */
function signOut(message = "Your organiser token is no longer accepted. Paste it again to carry on.") {
  sessionStorage.removeItem(TOKEN_KEY);
  stop();
  showSignIn(message);
}

// ---- Running -------------------------------------------------------------------------------

/** A phone added since the list was read (from another tab, say) is named once the list is read again. */
async function knowDevices(deviceIds) {
  if (deviceIds.some((id) => id && !page.devices.has(id))) await page.phones.refresh();
}

// Each refresh draws only if the organiser is still signed in with the client it started with.
const refreshScans = refresher(async (client) => {
  const scans = await client.scans(20);
  if (scans.some((scan) => scan.ticket_id && !page.tickets.has(scan.ticket_id))) await refreshTickets();
  await knowDevices(scans.map((scan) => scan.device_id));
  if (client !== page.client) return;
  drawScans(byId("scans-list"), byId("scans-summary"), scans, page);
});

const refreshAlerts = refresher(async (client) => {
  const alerts = await client.alerts();
  await knowDevices(alerts.flatMap((alert) => [alert.first?.device_id, alert.second?.device_id]));
  if (client !== page.client) return;
  drawAlerts(byId("alerts-panel"), byId("alerts-summary"), byId("alerts-list"), alerts, page);
});

const refreshNoShows = refresher(async (client) => {
  const people = await client.noShows();
  if (client !== page.client) return;
  drawNoShows(byId("no-shows-list"), byId("no-shows-summary"), people, {
    registered: page.attendance?.registered ?? 0,
  });
}, NO_SHOWS_GAP_MS);

/** Names for the scans feed and workshop bookings, from the snapshot (then only its changes). */
const refreshTickets = refresher(async (client) => {
  const snapshot = await client.snapshot(page.version);
  if (client !== page.client) return;
  if (snapshot.complete) page.tickets.clear();
  const learnt = snapshot.tickets ?? [];
  for (const ticket of learnt) page.tickets.set(ticket.ticket_id, ticket);
  page.version = snapshot.version ?? page.version;
  // The checkin service learns of the event with its first registration, which also moves `registered`.
  if (snapshot.event) showEvent(snapshot.event);
  if (page.attendance) drawBreakdowns(page.attendance);
  // Names for scans drawn before these tickets were known.
  if (learnt.length) refreshScans();
});

function showEvent(event) {
  page.event = event;
  useTimeZone(event.timezone);
  setText(byId("title"), event.title);
  document.title = `Attendance: ${event.title} – Plenary`;
  setText(byId("event-facts"), [event.venue, day(event.starts_at)].filter(Boolean).join(" · "));
}

function start(eventId, token) {
  stop();
  page.client = new Organiser(eventId, token);
  byId("sign-in").hidden = true;
  byId("content").hidden = false;
  byId("sign-out").hidden = false;
  page.feed = new AttendanceFeed(page.client, {
    onState: showAttendance,
    onStatus: setStatus,
    onSignedOut: () => signOut(),
  });
  page.feed.start();
  refreshTickets();
  page.phones.refresh();
  refreshScans();
  refreshAlerts();
  refreshNoShows();
  page.timers.push(
    setInterval(() => page.phones.refresh(), DEVICES_EVERY_MS),
    setInterval(() => page.phones.draw(), LAST_SEEN_EVERY_MS),
  );
}

function stop() {
  page.feed?.stop();
  page.feed = null;
  page.client = null;
  for (const timer of page.timers) clearInterval(timer);
  page.timers = [];
  page.attendance = null;
  page.tickets.clear();
  page.version = 0;
  page.event = null;
  setText(byId("title"), "Attendance");
  setText(byId("event-facts"), "");
  document.title = "Attendance – Plenary";
  page.devices = new Map();
  page.phones.reset();
  for (const id of ["scans-list", "alerts-list", "no-shows-list", "by-gate", "by-ticket-type", "by-session", "by-phase", "by-local-authority", "arrivals-table"]) {
    byId(id).replaceChildren();
  }
  for (const id of ["registered", "admitted", "inside", "no-shows"]) setText(byId(id), "–");
}

function setStatus(state) {
  const badge = byId("live");
  badge.dataset.state = state;
  setText(badge, STATUS_TEXT[state] ?? STATUS_TEXT.off);
}

// ---- Drawing the figures -------------------------------------------------------------------

function showAttendance(state) {
  const before = page.attendance;
  page.attendance = state;
  const registered = Number(state.registered) || 0;
  const admitted = Number(state.admitted) || 0;
  const inside = Number(state.inside) || 0;
  const noShows = state.no_shows ?? Math.max(registered - admitted, 0);
  // The headline figures first: they are what the organiser is watching.
  setText(byId("registered"), count(registered));
  setText(byId("admitted"), count(admitted));
  setText(byId("inside"), count(inside));
  setText(byId("no-shows"), count(noShows));
  setText(byId("admitted-note"), registered ? `${percent(admitted, registered)} of those registered` : "Scanned in at a door");
  setText(byId("inside-note"), admitted > inside ? `${count(admitted - inside)} stepped out` : "Admitted and not signed out");
  setText(byId("no-shows-note"), "Registered, not yet scanned in");

  drawBreakdowns(state);
  drawArrivals(
    { svg: byId("arrivals-chart"), summary: byId("arrivals-summary"), tableBody: byId("arrivals-table"), tableHead: byId("arrivals-unit") },
    state.arrivals_per_minute ?? [],
  );
  setText(byId("updated"), `Figures as at ${clockSeconds(state.updated_at ?? new Date())}.`);

  refreshScans();
  if (!before || (state.alerts ?? 0) !== (before.alerts ?? 0)) refreshAlerts();
  if (!before || registered !== before.registered || admitted !== before.admitted) refreshNoShows();
  if (before && registered !== before.registered) refreshTickets();
}

function drawBreakdowns(state) {
  const admitted = Number(state.admitted) || 0;
  drawBreakdown(byId("by-gate"), rowsOf(state.by_gate, (gate) => gate), {
    total: admitted,
    empty: "No one admitted yet.",
  });
  drawBreakdown(byId("by-ticket-type"), rowsOf(state.by_ticket_type, humanise), {
    total: admitted,
    empty: "No one admitted yet.",
  });
  drawBreakdown(byId("by-phase"), rowsOf(state.by_phase, phase), {
    total: admitted,
    empty: admitted ? "No phase given by those admitted." : "No one admitted yet.",
  });
  drawBreakdown(byId("by-local-authority"), rowsOf(state.by_local_authority, (name) => name), {
    total: admitted,
    empty: admitted ? "No local authority given by those admitted." : "No one admitted yet.",
  });
  drawBreakdown(byId("by-session"), sessionRows(state.by_session ?? {}), {
    total: 0,
    empty: "No workshop rooms scanned yet.",
  });
}

/** Every workshop of the event in programme order, with how many booked it and how many came in. */
function sessionRows(figures) {
  const booked = new Map();
  for (const ticket of page.tickets.values()) {
    if (ticket.status !== "valid") continue;
    for (const code of ticket.sessions ?? []) booked.set(code, (booked.get(code) ?? 0) + 1);
  }
  const sessions = page.event?.sessions ?? [];
  const known = new Set(sessions.map((session) => session.code));
  const rows = sessions.map((session) => ({
    key: session.code,
    label: session.title || humanise(session.code),
    n: Number(figures[session.code]) || 0,
    note: booked.has(session.code) ? `of ${count(booked.get(session.code))} booked` : "",
  }));
  for (const [code, n] of Object.entries(figures)) {
    if (!known.has(code) && Number(n) > 0) rows.push({ key: code, label: humanise(code), n: Number(n), note: "" });
  }
  return rows;
}

// ---- No-show export ------------------------------------------------------------------------

async function exportNoShows() {
  const button = byId("export-no-shows");
  const message = byId("export-message");
  button.disabled = true;
  message.textContent = "";
  try {
    const blob = await page.client.noShowsCsv();
    const url = URL.createObjectURL(blob);
    const slug = (page.event?.title ?? "event").toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
    const link = h("a", { href: url, download: `no-shows-${slug || "event"}.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    if (isSignedOut(error)) return signOut();
    message.textContent = `The list was not downloaded: ${reason(error)}`;
  } finally {
    button.disabled = false;
  }
}

// ---- Start ---------------------------------------------------------------------------------

function boot() {
  page.phones = new DoorPhones({
    client: () => page.client,
    signOut: () => signOut(),
    devicesChanged: (devices) => {
      page.devices = devices;
    },
  });
  byId("sign-in-form").addEventListener("submit", signIn);
  byId("sign-out").addEventListener("click", () => signOut("You have signed out. The token has been forgotten."));
  byId("export-no-shows").addEventListener("click", exportNoShows);

  const eventId = eventFromAddress();
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (eventId && token) start(eventId, token);
  else showSignIn(eventId ? "" : "This address does not say which event to show. Enter the event reference.");
}

boot();
