// How figures, times and codes read on the dashboard: British English, the event's own time zone.

const NUMBER = new Intl.NumberFormat("en-GB");
const PERCENT = new Intl.NumberFormat("en-GB", { style: "percent", maximumFractionDigits: 0 });

export function count(n) {
  return NUMBER.format(Number(n) || 0);
}

export function percent(part, whole) {
  return whole > 0 ? PERCENT.format(part / whole) : "–";
}

/** "1 delegate", "3 delegates". */
export function plural(n, one, many = `${one}s`) {
  return `${count(n)} ${Number(n) === 1 ? one : many}`;
}

let timeZone;

/** Times read in the venue's zone (from the event), so 09:12 on screen is 09:12 on the hall clock. */
export function useTimeZone(zone) {
  try {
    new Intl.DateTimeFormat("en-GB", { timeZone: zone });
    timeZone = zone;
  } catch {
    timeZone = undefined;
  }
}

function formatter(options) {
  return new Intl.DateTimeFormat("en-GB", { ...options, timeZone });
}

/** "09:12". */
export function clock(value) {
  const at = value instanceof Date ? value : new Date(value);
  return Number.isNaN(at.getTime()) ? "–" : formatter({ hour: "2-digit", minute: "2-digit" }).format(at);
}

/** "09:12:05". */
export function clockSeconds(value) {
  const at = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(at.getTime())) return "–";
  return formatter({ hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(at);
}

/** "Friday 12 March 2027". */
export function day(value) {
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) return "";
  return formatter({ weekday: "long", day: "numeric", month: "long", year: "numeric" }).format(at);
}

/** "just now", "2 min ago", "3 hours ago", "12 March" — for a device's last sign of life. */
export function ago(value, now = Date.now()) {
  if (!value) return "Never";
  const at = new Date(value).getTime();
  if (Number.isNaN(at)) return "Never";
  const seconds = Math.max(0, Math.round((now - at) / 1000));
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return hours === 1 ? "1 hour ago" : `${hours} hours ago`;
  return formatter({ day: "numeric", month: "long" }).format(new Date(at));
}

const PHASES = {
  early_years: "Early years",
  primary: "Primary",
  secondary: "Secondary",
  special: "Special (SEN)",
  alternative_provision: "Alternative provision",
  further_education: "Further education",
  higher_education: "Higher education",
  other: "Other",
};

export function phase(code) {
  return PHASES[code] ?? humanise(code);
}

/** A code as words: "future_heads" -> "Future heads". */
export function humanise(code) {
  const words = String(code ?? "").replace(/[_-]+/g, " ").trim();
  return words ? words[0].toLocaleUpperCase("en-GB") + words.slice(1) : "Not given";
}

export const VERDICTS = {
  admitted: { label: "Admitted", tone: "good" },
  already_admitted: { label: "Already admitted", tone: "warn" },
  exited: { label: "Left", tone: "neutral" },
  revoked: { label: "Ticket revoked", tone: "bad" },
  unknown_ticket: { label: "Unknown ticket", tone: "bad" },
  invalid_signature: { label: "Not a genuine ticket", tone: "bad" },
  wrong_event: { label: "Ticket for another event", tone: "bad" },
  malformed: { label: "Unreadable code", tone: "bad" },
  not_entitled: { label: "Not booked on this workshop", tone: "bad" },
};

export function verdict(code) {
  return VERDICTS[code] ?? { label: humanise(code), tone: "neutral" };
}
