// The door app: enrol the phone, read tickets (camera or hardware scanner), show the verdict, keep going
// offline. Scans go to the server while it answers within 1.5 s; otherwise this phone decides from its
// ticket book and queues the scan for upload.

import { Refused, Unreachable } from "/static/js/api.js";
import * as api from "./api.js";
import { TicketBook, folded, queue, ticketIdOf } from "./book.js";
import { Camera } from "./camera.js";
import { clockTime, present, signal, ticketTypeLabel, unlockSound } from "./verdicts.js";

const DEVICE_KEY = "plenary.door.device";
const SETTINGS_KEY = "plenary.door.settings";
// The same code seen again this soon after its verdict is the same ticket still in front of the camera.
const REREAD_QUIET_MS = 3000;
const REFRESH_MS = 30000;
const PROBE_MS = 3000;
const UPLOAD_DEADLINE_MS = 5000;
// A hardware scanner types a whole code in well under this between keys; people type slower.
const WEDGE_KEY_GAP_MS = 250;
const ROOM_WORDS = /\b(room|suite|studio|lab|theatre|workshop|seminar)\b/i;

const $ = (id) => document.getElementById(id);

const state = {
  device: null,
  settings: { gate: null, session: "" },
  direction: "in",
  online: true,
  book: new TicketBook(),
  queued: 0,
  camera: null,
  enrolCamera: null,
  pendingEnrolment: null,
  verdictTimer: null,
  verdictShowing: false,
  lastRead: { text: null, until: 0 },
  work: Promise.resolve(),
  syncing: null,
  probeTimer: null,
  refreshTimer: null,
  wedge: { text: "", at: 0 },
  listProblem: null,
};

// ---- Stored device and settings -------------------------------------------------------------------

function loadDevice() {
  try {
    const device = JSON.parse(localStorage.getItem(DEVICE_KEY) ?? "null");
    return device?.token && device?.event_id ? device : null;
  } catch {
    return null;
  }
}

function saveDevice(device) {
  localStorage.setItem(DEVICE_KEY, JSON.stringify(device));
}

function loadSettings(device) {
  try {
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}");
    if (saved.device_id === device.device_id) return { gate: saved.gate ?? null, session: saved.session ?? "" };
  } catch {
    // Unreadable settings start afresh.
  }
  return { gate: null, session: "" };
}

function saveSettings() {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify({ device_id: state.device.device_id, ...state.settings }));
}

/** The enrolment code in a dashboard link (".../scan#enrol=CODE") or pasted on its own. */
export function enrolmentCodeFrom(text) {
  const trimmed = String(text ?? "").trim();
  const linked = trimmed.match(/#(?:[^#]*&)?enrol=([^&\s#]+)/i);
  if (linked) {
    try {
      return decodeURIComponent(linked[1]);
    } catch {
      return null;
    }
  }
  return /^[A-Za-z0-9_-]{16,200}$/.test(trimmed) ? trimmed : null;
}

// ---- Screens ----------------------------------------------------------------------------------------

function showScreen(id) {
  for (const screen of document.querySelectorAll(".screen")) screen.hidden = screen.id !== id;
}

function showEnrol(message = "") {
  stopScanning();
  showScreen("enrol-screen");
  $("title").textContent = "Door scanning";
  $("where").textContent = "This phone is not set up yet";
  $("enrol-message").textContent = message;
  renderConnection();
}

function notice(text, ms = 6000) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => {
    box.hidden = true;
  }, ms);
}

// ---- Enrolment --------------------------------------------------------------------------------------

const ENROL_REFUSALS = {
  enrolment_code_unknown: "This enrolment code is not recognised. Scan the code on the organiser's dashboard again.",
  enrolment_code_used:
    "This enrolment code has already been used. Ask the organiser to add this phone again for a new code.",
  device_revoked: "The organiser has removed this phone. Ask them for a new enrolment code.",
};

async function enrolWith(code) {
  state.pendingEnrolment = code;
  $("enrol-message").textContent = "";
  try {
    const reply = await api.enrol(code);
    state.pendingEnrolment = null;
    const device = {
      device_id: reply.device_id,
      event_id: reply.event_id,
      name: reply.name,
      gates: reply.gates,
      token: reply.token,
    };
    saveDevice(device);
    await startScanning(device);
  } catch (error) {
    if (error instanceof Refused) {
      state.pendingEnrolment = null;
      showEnrol(ENROL_REFUSALS[error.code] ?? "This phone could not be enrolled. Ask the organiser for a new code.");
    } else if (error instanceof Unreachable) {
      showEnrol("No answer from the server. Check the wifi, then press “Enrol this phone” to try again.");
    } else {
      throw error;
    }
  }
}

async function startEnrolCamera() {
  unlockSound();
  $("enrol-viewfinder").hidden = false;
  $("enrol-camera").hidden = true;
  state.enrolCamera = new Camera($("enrol-video"), async (text) => {
    const code = enrolmentCodeFrom(text);
    if (!code) {
      $("enrol-message").textContent = "That QR code is not an enrolment code. Scan the one on the organiser's dashboard.";
      return;
    }
    stopEnrolCamera();
    await enrolWith(code);
  });
  try {
    await state.enrolCamera.start();
  } catch (error) {
    stopEnrolCamera();
    $("enrol-message").textContent = cameraProblem(error);
  }
}

function stopEnrolCamera() {
  state.enrolCamera?.stop();
  state.enrolCamera = null;
  $("enrol-viewfinder").hidden = true;
  $("enrol-camera").hidden = false;
}

// ---- Scanning ---------------------------------------------------------------------------------------

async function startScanning(device) {
  stopEnrolCamera();
  state.device = device;
  state.settings = loadSettings(device);
  if (!device.gates.includes(state.settings.gate)) state.settings.gate = device.gates[0];
  await state.book.load(device.event_id);
  state.queued = await queue.length();
  showScreen("scan-screen");
  renderAll();
  startCamera();
  keepScreenOn();
  checkDevice();
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(() => {
    if (state.online) sync();
  }, REFRESH_MS);
  await sync({ full: true });
}

function stopScanning() {
  state.camera?.stop();
  state.camera = null;
  clearInterval(state.refreshTimer);
  clearInterval(state.probeTimer);
  state.probeTimer = null;
  hideVerdict();
}

function cameraProblem(error) {
  if (error?.name === "NotAllowedError" || error?.name === "SecurityError") {
    return "The camera is blocked. Allow the camera for this page in the browser's settings, or use a hardware scanner.";
  }
  if (error?.name === "NotFoundError" || error?.name === "OverconstrainedError") {
    return "No camera found. Use a hardware scanner or type the ticket code.";
  }
  return "The camera could not start. Press the button to try again, or use a hardware scanner.";
}

async function startCamera() {
  const hint = $("camera-hint");
  $("camera-retry").hidden = true;
  hint.textContent = "Starting the camera…";
  state.camera?.stop();
  state.camera = new Camera($("video"), onCameraText);
  try {
    await state.camera.start();
    hint.textContent = "Point the camera at the ticket's QR code";
    if (state.verdictShowing) state.camera.pause();
  } catch (error) {
    state.camera = null;
    hint.textContent = cameraProblem(error);
    $("camera-retry").hidden = false;
  }
}

async function keepScreenOn() {
  try {
    if (document.visibilityState === "visible") await navigator.wakeLock?.request("screen");
  } catch {
    // Not every browser lets a page keep the screen on; the door staff can still tap it awake.
  }
}

function onCameraText(text) {
  if (state.verdictShowing) return undefined;
  if (text === state.lastRead.text && Date.now() < state.lastRead.until) return undefined;
  return submit(text);
}

/** Scans are decided one at a time, in the order they were read. */
function submit(text) {
  const code = String(text).trim();
  if (!code || !state.device) return Promise.resolve();
  state.lastRead = { text, until: Number.POSITIVE_INFINITY };
  const next = state.work.then(() => decide(code, text));
  state.work = next.catch((error) => {
    console.error("scan failed:", error?.name ?? "error");
    showVerdict({ verdict: "refused_request" }, { problem: "Something went wrong on this phone. Scan the ticket again." }, text);
  });
  return state.work;
}

function currentWorkshop() {
  return state.book.sessions.find((session) => session.code === state.settings.session) ?? null;
}

async function decide(code, readText) {
  const device = state.device;
  const session = state.settings.session || null;
  const body = {
    code,
    gate: state.settings.gate,
    direction: state.direction,
    nonce: crypto.randomUUID(),
    scanned_at: new Date().toISOString(),
  };
  if (session) body.session = session;
  const context = { timeZone: state.book.event?.timezone ?? null, workshop: currentWorkshop()?.title ?? null };

  // While earlier scans wait to upload, new ones join the queue behind them so the server sees them in order.
  if (state.online && state.queued === 0) {
    try {
      const reply = await api.scan(device, body);
      await state.book.remember(ticketIdOf(code), reply.verdict, {
        gate: body.gate,
        session,
        firstAdmitted: reply.first_admitted ?? null,
      });
      showVerdict(reply, context, readText);
      if (reply.alert) notice(doubleEntryNotice(reply.alert));
      return;
    } catch (error) {
      if (error instanceof Refused) {
        if (error.status === 401) return deviceRemoved();
        showVerdict({ verdict: "refused_request" }, { ...context, problem: refusalProblem(error) }, readText);
        return;
      }
      if (!(error instanceof Unreachable)) throw error;
      goOffline();
    }
  }

  const result = await state.book.judge(code, { direction: body.direction, session });
  if (result.verdict !== "cannot_check") {
    await queue.add({ ...body, offline: true, offline_verdict: result.verdict });
    state.queued += 1;
    await state.book.remember(result.ticket_id, result.verdict, {
      gate: body.gate,
      session,
      at: body.scanned_at,
      firstAdmitted: result.first_admitted ?? null,
    });
    renderConnection();
  }
  showVerdict(result, { ...context, offline: result.verdict !== "cannot_check" }, readText);
  if (state.online) sync();
}

function refusalProblem(error) {
  if (error.code === "gate_not_assigned") {
    return "This phone is not assigned to this gate or room. Ask the organiser to add it.";
  }
  if (error.status === 403) return "This phone may not scan for this event. Ask the organiser.";
  return "The server could not read this scan. Try again, or send them to the registration desk.";
}

function doubleEntryNotice(alert) {
  const who = alert.name ? `${alert.name}` : "A delegate";
  return `Double entry flagged for the organiser: ${who} was let in at two doors.`;
}

// ---- The verdict screen -----------------------------------------------------------------------------

function showVerdict(result, context, readText) {
  const screen = present(result, context);
  const box = $("verdict");
  box.dataset.tone = screen.tone;
  box.dataset.verdict = result.verdict;
  box.querySelector(".verdict-symbol").textContent = screen.symbol;
  box.querySelector(".verdict-title").textContent = screen.title;
  box.querySelector(".verdict-name").textContent = screen.name;
  box.querySelector(".verdict-detail").textContent = screen.detail;
  box.querySelector(".verdict-note").textContent = screen.note;
  box.setAttribute("aria-label", `${screen.announcement}. Tap to scan the next ticket.`);
  box.hidden = false;
  state.verdictShowing = true;
  // Re-set even when the text is the same, so screen readers announce a repeated verdict too.
  $("announcer").textContent = "";
  requestAnimationFrame(() => {
    $("announcer").textContent = screen.announcement;
  });
  signal(screen.sound);
  state.camera?.pause();
  state.lastRead = { text: readText, until: Number.POSITIVE_INFINITY };
  clearTimeout(state.verdictTimer);
  state.verdictTimer = setTimeout(hideVerdict, screen.holdMs);
}

function hideVerdict() {
  clearTimeout(state.verdictTimer);
  if (!state.verdictShowing) return;
  state.verdictShowing = false;
  $("verdict").hidden = true;
  state.lastRead.until = Date.now() + REREAD_QUIET_MS;
  state.camera?.resume();
}

// ---- Online, offline and sync -----------------------------------------------------------------------

function goOffline() {
  if (state.online) {
    state.online = false;
    renderConnection();
  }
  if (!state.probeTimer) state.probeTimer = setInterval(probe, PROBE_MS);
}

async function probe() {
  if (!state.device || state.online) return;
  if (await api.reachable()) sync();
}

function goOnline() {
  clearInterval(state.probeTimer);
  state.probeTimer = null;
  if (!state.online) {
    state.online = true;
    renderConnection();
  }
}

/** Uploads queued scans in order, then brings the ticket book up to date. One run at a time. */
function sync({ full = false } = {}) {
  if (!state.syncing) {
    state.syncing = runSync(full).finally(() => {
      state.syncing = null;
    });
  }
  return state.syncing;
}

async function runSync(full) {
  const device = state.device;
  if (!device) return;
  try {
    await upload(device);
    goOnline();
    const since = full || !state.book.loaded ? 0 : state.book.version;
    try {
      await state.book.apply(await api.snapshot(device, since));
      state.listProblem = null;
    } catch (error) {
      if (!(error instanceof Refused) || error.status === 401) throw error;
      state.listProblem = "The server did not send a ticket list.";
      console.warn("ticket list refused:", error.code);
    }
  } catch (error) {
    if (error instanceof Unreachable) goOffline();
    else if (error instanceof Refused && error.status === 401) deviceRemoved();
    else throw error;
  } finally {
    renderAll();
  }
}

async function upload(device) {
  for (const entry of await queue.entries()) {
    const { seq, ...body } = entry;
    try {
      const reply = await api.scan(device, body, UPLOAD_DEADLINE_MS);
      if (reply.alert) notice(doubleEntryNotice(reply.alert));
    } catch (error) {
      // Refused for good (the phone's gates changed, say): keeping it would block every scan behind it.
      if (!(error instanceof Refused) || error.status === 401 || error.status === 429) throw error;
      console.warn("queued scan refused:", error.code);
    }
    await queue.done(seq);
    state.queued = Math.max(0, state.queued - 1);
    renderConnection();
  }
  state.queued = await queue.length();
}

async function checkDevice() {
  try {
    const me = await api.me(state.device.token);
    if (me.revoked) return deviceRemoved();
    const device = { ...state.device, name: me.name, gates: me.gates };
    saveDevice(device);
    state.device = device;
    if (!device.gates.includes(state.settings.gate)) state.settings.gate = device.gates[0];
    renderAll();
  } catch (error) {
    if (error instanceof Refused && error.status === 401) deviceRemoved();
    // Otherwise the enrolment's copy of the device stands.
  }
  return undefined;
}

function deviceRemoved() {
  localStorage.removeItem(DEVICE_KEY);
  state.device = null;
  showEnrol("The organiser has removed this phone, or its enrolment has ended. Scan a new enrolment code.");
}

async function forgetPhone() {
  const waiting = state.queued ? ` ${state.queued} scans have not been uploaded yet and will be lost.` : "";
  if (!window.confirm(`Stop using this phone for scanning?${waiting}`)) return;
  closeMenu();
  localStorage.removeItem(DEVICE_KEY);
  localStorage.removeItem(SETTINGS_KEY);
  await state.book.forget();
  await queue.clear();
  state.queued = 0;
  state.device = null;
  showEnrol("");
}

// ---- Rendering --------------------------------------------------------------------------------------

function renderAll() {
  if (!state.device) return;
  renderHeader();
  renderControls();
  renderConnection();
  renderPhone();
}

function renderHeader() {
  $("title").textContent = state.book.event?.title ?? "Door scanning";
  const workshop = currentWorkshop();
  const place = workshop ? `${state.settings.gate} · ${workshop.title}` : state.settings.gate;
  $("where").textContent = `${state.device.name} · ${place}`;
}

function renderConnection() {
  const badge = $("connection");
  badge.dataset.queue = String(state.queued);
  if (!state.device) {
    badge.dataset.state = "starting";
    badge.textContent = "Not set up";
  } else if (!state.online) {
    badge.dataset.state = "offline";
    badge.textContent = `Offline · ${state.queued} queued`;
  } else if (state.queued > 0) {
    badge.dataset.state = "uploading";
    badge.textContent = `Uploading · ${state.queued}`;
  } else {
    badge.dataset.state = "online";
    badge.textContent = "Online";
  }
  let label = state.online ? `Online, ${state.queued} scans waiting to upload` : `Offline, ${state.queued} scans queued`;
  if (!state.device) label = "This phone is not set up";
  badge.setAttribute("aria-label", label);
  $("phone-queue").textContent = state.queued === 1 ? "1 scan" : `${state.queued} scans`;
}

function looksLikeRoom(gate) {
  const name = folded(gate);
  return (
    ROOM_WORDS.test(gate) ||
    state.book.sessions.some((session) => name === folded(session.code) || name === folded(session.title))
  );
}

function renderControls() {
  const gates = state.device.gates;
  const gateSelect = $("gate");
  $("gate-field").hidden = gates.length < 2;
  if (gateSelect.options.length !== gates.length || [...gateSelect.options].some((o, i) => o.value !== gates[i])) {
    gateSelect.replaceChildren(...gates.map((gate) => new Option(gate, gate)));
  }
  gateSelect.value = state.settings.gate;

  const sessions = state.book.sessions;
  const roomMode = sessions.length > 0 && gates.some(looksLikeRoom);
  $("room-field").hidden = !roomMode;
  if (!roomMode && state.settings.session) state.settings.session = "";
  const roomSelect = $("room");
  const wanted = ["", ...sessions.map((s) => s.code)];
  if ([...roomSelect.options].map((o) => o.value).join("\n") !== wanted.join("\n")) {
    roomSelect.replaceChildren(
      new Option("The event (at the gate)", ""),
      ...sessions.map((session) => new Option(`Workshop: ${session.title}`, session.code)),
    );
  }
  if (!wanted.includes(state.settings.session)) state.settings.session = "";
  roomSelect.value = state.settings.session;
  $(state.direction === "out" ? "direction-out" : "direction-in").checked = true;
}

function renderPhone() {
  $("phone-name").textContent = state.device.name;
  $("phone-gates").textContent = state.device.gates.join(", ");
  const book = state.book;
  if (book.loaded) {
    const when = clockTime(new Date(book.fetchedAt).toISOString(), null);
    const tickets = book.ticketCount === 1 ? "1 ticket" : `${book.ticketCount} tickets`;
    $("phone-list").textContent = `${tickets}, updated ${when}`;
  } else {
    $("phone-list").textContent = state.listProblem ?? "Not downloaded yet";
  }
  document.body.dataset.tickets = String(book.ticketCount);
  document.body.dataset.listVersion = String(book.version);
}

function renderSearch() {
  const query = $("search").value;
  const { matches, total } = state.book.search(query);
  const list = $("search-results");
  const summary = $("search-summary");
  if (!folded(query).trim()) {
    summary.textContent = state.book.loaded ? "" : "The ticket list has not been downloaded yet.";
    list.replaceChildren();
    return;
  }
  summary.textContent =
    total === 0
      ? "No one on the ticket list matches."
      : total > matches.length
        ? `${total} match; the first ${matches.length} are shown. Add more of the name to narrow it down.`
        : `${total} ${total === 1 ? "match" : "matches"}.`;
  const timeZone = state.book.event?.timezone ?? null;
  const titles = new Map(state.book.sessions.map((s) => [s.code, s.title]));
  list.replaceChildren(
    ...matches.map((ticket) => {
      const item = document.createElement("li");
      const line = (className, text) => {
        const span = document.createElement("span");
        span.className = className;
        span.textContent = text;
        item.append(span);
      };
      line("person", ticket.name || "Name not given");
      if (ticket.organisation) line("organisation", ticket.organisation);
      line("type", ticketTypeLabel(ticket.ticket_type));
      const standing = ticket.standing;
      let text;
      if (ticket.status !== "valid") {
        item.dataset.standing = "barred";
        text = ticket.status === "cancelled" ? "Registration cancelled: do not admit" : "Ticket cancelled: do not admit";
      } else if (standing) {
        item.dataset.standing = standing.inside ? "inside" : "left";
        const first = `${clockTime(standing.first_at, timeZone)} at ${standing.first_gate}`;
        text = standing.inside ? `Inside: admitted ${first}` : `Went out: first admitted ${first}`;
      } else {
        item.dataset.standing = "absent";
        text = "Not arrived yet";
      }
      line("standing", text);
      if (ticket.sessions?.length) {
        line("workshops", `Workshops: ${ticket.sessions.map((code) => titles.get(code) ?? code).join(", ")}`);
      }
      return item;
    }),
  );
}

// ---- Menu -------------------------------------------------------------------------------------------

function openMenu() {
  state.camera?.pause();
  renderPhone();
  renderSearch();
  $("menu").hidden = false;
  $("search").focus();
}

function closeMenu() {
  $("menu").hidden = true;
  if (!state.verdictShowing) state.camera?.resume();
  $("open-menu").focus();
}

// ---- Wiring -----------------------------------------------------------------------------------------

function isTypingTarget(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}

/** A hardware scanner types the code and Enter; catch it even when no field has focus. */
function onKey(event) {
  unlockSound();
  if (!state.device || isTypingTarget(event.target) || !$("menu").hidden) return;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const now = Date.now();
  if (now - state.wedge.at > WEDGE_KEY_GAP_MS) state.wedge.text = "";
  state.wedge.at = now;
  if (event.key === "Enter") {
    const text = state.wedge.text;
    state.wedge.text = "";
    if (text.length >= 4) {
      event.preventDefault();
      submit(text);
    } else if (state.verdictShowing) {
      event.preventDefault();
      hideVerdict();
    }
  } else if (event.key.length === 1) {
    state.wedge.text += event.key;
  }
}

function wire() {
  document.addEventListener("pointerdown", unlockSound, { passive: true });
  document.addEventListener("keydown", onKey);
  $("verdict").addEventListener("click", hideVerdict);
  $("enrol-camera").addEventListener("click", startEnrolCamera);
  $("enrol-form").addEventListener("submit", (event) => {
    event.preventDefault();
    unlockSound();
    const typed = $("enrol-code").value;
    const code = typed.trim() ? enrolmentCodeFrom(typed) : state.pendingEnrolment;
    if (!code) {
      $("enrol-message").textContent = "Paste the enrolment code or link from the organiser's dashboard.";
      return;
    }
    $("enrol-code").value = "";
    stopEnrolCamera();
    enrolWith(code);
  });
  $("code-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("code");
    const text = input.value;
    input.value = "";
    if (text.trim()) submit(text);
  });
  $("camera-retry").addEventListener("click", startCamera);
  for (const radio of document.querySelectorAll("input[name=direction]")) {
    radio.addEventListener("change", () => {
      state.direction = radio.value === "out" ? "out" : "in";
    });
  }
  $("gate").addEventListener("change", () => {
    state.settings.gate = $("gate").value;
    saveSettings();
    renderHeader();
  });
  $("room").addEventListener("change", () => {
    state.settings.session = $("room").value;
    saveSettings();
    renderHeader();
  });
  $("open-menu").addEventListener("click", openMenu);
  $("close-menu").addEventListener("click", closeMenu);
  $("search").addEventListener("input", renderSearch);
  $("refresh-list").addEventListener("click", () => {
    if (state.online) sync();
    else probe();
  });
  $("forget-phone").addEventListener("click", forgetPhone);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("menu").hidden) closeMenu();
  });
  window.addEventListener("offline", () => {
    if (state.device) goOffline();
  });
  window.addEventListener("online", () => probe());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || !state.device) return;
    keepScreenOn();
    if (state.online) sync();
  });
}

async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) return;
  try {
    await navigator.serviceWorker.register("/scan/sw.js", { scope: "/scan" });
  } catch (error) {
    console.warn("offline copy of the app unavailable:", error?.name ?? "error");
  }
}

/** Enrols with the code in the address's fragment, if there is one; a new code replaces an old enrolment. */
async function enrolFromAddress() {
  const fromLink = enrolmentCodeFrom(location.hash);
  if (!fromLink) return false;
  // The code is a one-time secret: keep it out of the address bar and history from now on.
  history.replaceState(null, "", `${location.pathname}${location.search}`);
  showEnrol("");
  $("where").textContent = "Enrolling this phone…";
  await enrolWith(fromLink);
  return true;
}

async function boot() {
  wire();
  registerServiceWorker();
  // An enrolment link opened while the app is already showing changes only the fragment.
  window.addEventListener("hashchange", enrolFromAddress);
  if (await enrolFromAddress()) return;
  const device = loadDevice();
  if (device) await startScanning(device);
  else showEnrol("");
}

boot();
