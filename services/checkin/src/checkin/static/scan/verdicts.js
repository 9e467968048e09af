// What each verdict looks, sounds and feels like at the door: words in plain English, a colour, a tone.

const HOLD_MS = { admitted: 2000, exited: 2000, warning: 3500, refused: 4500 };

const REFUSALS = {
  revoked: {
    title: "Ticket cancelled",
    detail: "This ticket was cancelled or replaced by a newer one. Ask for their latest ticket, or send them to the registration desk.",
  },
  unknown_ticket: {
    title: "Ticket not found",
    detail: "This event has no record of the ticket. Send them to the registration desk.",
  },
  invalid_signature: {
    title: "Not a genuine ticket",
    detail: "This code was altered or was not issued for this event. Send them to the registration desk.",
  },
  wrong_event: {
    title: "Ticket for another event",
    detail: "This ticket is for a different event. Check they have come to the right one.",
  },
  malformed: {
    title: "Not a ticket code",
    detail: "This QR code is not a Plenary ticket. Ask for the QR code in their confirmation email.",
  },
  not_entitled: {
    title: "Not booked on this workshop",
    detail: "Their ticket has no place in this workshop. Ask them to check their booking at the registration desk.",
  },
};

/** A ticket type code as people say it: "future-heads" reads "Future heads". */
export function ticketTypeLabel(code) {
  const words = String(code ?? "").replace(/[-_]+/g, " ").trim();
  return words ? words[0].toLocaleUpperCase("en-GB") + words.slice(1) : "";
}

function formatter(timeZone, options) {
  try {
    return new Intl.DateTimeFormat("en-GB", { ...options, timeZone: timeZone || undefined });
  } catch {
    return new Intl.DateTimeFormat("en-GB", options);
  }
}

/** "09:12" in the event's time zone (the phone's own if unknown), with the day if not today. */
export function clockTime(iso, timeZone, now = new Date()) {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "";
  const time = formatter(timeZone, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(at);
  const day = formatter(timeZone, { year: "numeric", month: "2-digit", day: "2-digit" });
  if (day.format(at) === day.format(now)) return time;
  return `${formatter(timeZone, { weekday: "short", day: "numeric", month: "short" }).format(at)}, ${time}`;
}

/**
 * The screen for a verdict. `result` is a scan reply (server or this phone's own) with `verdict`,
 * `attendee`, `first_admitted`; `context` says where and how it was decided.
 */
export function present(result, { timeZone = null, offline = false, workshop = null, problem = null } = {}) {
  const name = result.attendee?.name ?? "";
  const type = ticketTypeLabel(result.attendee?.ticket_type);
  const notes = [];
  if (offline) notes.push("Checked on this phone while offline: it uploads when the connection returns.");
  if (result.unlisted) notes.push("Not on this phone's ticket list yet: ask for their name.");
  if (workshop) notes.push(`Workshop: ${workshop}`);
  let screen;
  switch (result.verdict) {
    case "admitted":
      screen = { tone: "admitted", sound: "good", symbol: "✓", title: "Admitted", name, detail: type };
      break;
    case "already_admitted": {
      const first = result.first_admitted;
      const when = first ? clockTime(first.at, timeZone) : "";
      const where = first?.gate ? ` at ${first.gate}` : "";
      screen = {
        tone: "warning",
        sound: "warning",
        symbol: "!",
        title: "Already admitted",
        name,
        detail: when ? `${when}${where}` : "Admitted earlier",
      };
      break;
    }
    case "exited":
      screen = { tone: "exited", sound: "good", symbol: "→", title: "Exit recorded", name, detail: type };
      break;
    case "cannot_check":
      screen = {
        tone: "warning",
        sound: "bad",
        symbol: "?",
        title: "Cannot check offline",
        name: "",
        detail: "This phone has no ticket list yet. Wait for the connection to come back.",
      };
      notes.length = 0;
      break;
    case "refused_request":
      screen = {
        tone: "refused",
        sound: "bad",
        symbol: "✕",
        title: "Scan not accepted",
        name: "",
        detail: problem || "The server did not accept this scan.",
      };
      break;
    default: {
      const refusal = REFUSALS[result.verdict] ?? {
        title: "Do not admit",
        detail: "This ticket cannot be accepted. Send them to the registration desk.",
      };
      screen = { tone: "refused", sound: "bad", symbol: "✕", title: refusal.title, name, detail: refusal.detail };
    }
  }
  const holdMs = HOLD_MS[screen.tone] ?? HOLD_MS.refused;
  const note = notes.join(" ");
  const announcement = [screen.title, screen.name, screen.detail, note].filter(Boolean).join(". ");
  return { ...screen, note, holdMs, announcement };
}

let audio = null;

/** Browsers only allow sound after a tap or key press; call this from one. */
export function unlockSound() {
  try {
    audio = audio ?? new AudioContext();
    if (audio.state === "suspended") audio.resume();
  } catch {
    audio = null;
  }
}

const TONES = {
  good: [{ frequency: 880, at: 0, length: 0.09 }, { frequency: 1320, at: 0.11, length: 0.14 }],
  warning: [{ frequency: 660, at: 0, length: 0.15 }, { frequency: 660, at: 0.22, length: 0.15 }],
  bad: [{ frequency: 196, at: 0, length: 0.5, wave: "square" }],
};

const VIBRATIONS = { good: [80], warning: [150, 80, 150], bad: [400, 120, 400] };

export function signal(kind) {
  try {
    navigator.vibrate?.(VIBRATIONS[kind] ?? VIBRATIONS.bad);
  } catch {
    // Vibration is a courtesy.
  }
  if (!audio || audio.state !== "running") return;
  const start = audio.currentTime + 0.01;
  for (const tone of TONES[kind] ?? TONES.bad) {
    const oscillator = audio.createOscillator();
    const gain = audio.createGain();
    oscillator.type = tone.wave ?? "sine";
    oscillator.frequency.value = tone.frequency;
    gain.gain.setValueAtTime(0.0001, start + tone.at);
    gain.gain.exponentialRampToValueAtTime(0.4, start + tone.at + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + tone.at + tone.length);
    oscillator.connect(gain).connect(audio.destination);
    oscillator.start(start + tone.at);
    oscillator.stop(start + tone.at + tone.length + 0.02);
  }
}
