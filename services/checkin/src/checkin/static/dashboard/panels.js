// Rendering of the dashboard's tables and lists from API replies. Nothing here fetches.

import { bar, h } from "./dom.js";
import { clock, clockSeconds, count, humanise, percent, plural, verdict } from "./format.js";

function emptyRow(text, columns = 2) {
  return h("tr", { class: "empty" }, h("td", { colspan: columns }, text));
}

/**
 * A breakdown table: one row per key with its count and a bar.
 * `rows` is [{key, label, n, note?}]; bars are scaled to the largest figure, shares are of `total`.
 */
export function drawBreakdown(tbody, rows, { total, empty }) {
  if (!rows.length) {
    tbody.replaceChildren(emptyRow(empty));
    return;
  }
  const largest = Math.max(1, ...rows.map((row) => row.n));
  tbody.replaceChildren(
    ...rows.map((row) =>
      h(
        "tr",
        { "data-key": row.key },
        h("th", { scope: "row" }, h("span", { class: "label" }, row.label), bar(row.n / largest)),
        h(
          "td",
          { class: "n" },
          h("span", { class: "figure" }, count(row.n)),
          row.note ? h("span", { class: "share" }, row.note) : total ? h("span", { class: "share" }, percent(row.n, total)) : null,
        ),
      ),
    ),
  );
}

/** Rows for a {key: n} breakdown, largest first, named by `label(key)`. */
export function rowsOf(figures, label) {
  return Object.entries(figures ?? {})
    .filter(([, n]) => Number(n) > 0)
    .map(([key, n]) => ({ key, label: label(key), n: Number(n) }))
    .sort((a, b) => b.n - a.n || a.label.localeCompare(b.label, "en-GB"));
}

function who(ticketId, tickets) {
  const ticket = ticketId ? tickets.get(ticketId) : null;
  if (ticket) return ticket.name || "Delegate";
  return ticketId ? "Ticket not on the list yet" : "Unreadable code";
}

function deviceName(deviceId, devices) {
  if (!deviceId) return "organiser";
  return devices.get(deviceId)?.name ?? "a door phone";
}

/** The recent scans feed, newest first. */
export function drawScans(list, summary, scans, { tickets, devices }) {
  summary.textContent = scans.length
    ? `The latest ${plural(scans.length, "scan")}, newest first.`
    : "No scans yet. Scans appear here as the door phones make them.";
  list.replaceChildren(
    ...scans.map((scan) => {
      const judged = verdict(scan.verdict);
      const ticket = scan.ticket_id ? tickets.get(scan.ticket_id) : null;
      const movement = scan.direction === "out" ? "out at" : "in at";
      return h(
        "li",
        { class: `scan tone-${judged.tone}`, "data-verdict": scan.verdict },
        h("time", { class: "scan-time", datetime: scan.scanned_at || scan.received_at }, clockSeconds(scan.scanned_at || scan.received_at)),
        h("span", { class: "scan-verdict" }, judged.label),
        h(
          "span",
          { class: "scan-who" },
          h("span", { class: "scan-name" }, who(scan.ticket_id, tickets)),
          ticket?.organisation ? h("span", { class: "scan-org" }, ticket.organisation) : null,
        ),
        h(
          "span",
          { class: "scan-where" },
          `${movement} ${scan.gate} · ${deviceName(scan.device_id, devices)}`,
          scan.offline ? h("span", { class: "tag" }, "uploaded later") : null,
        ),
      );
    }),
  );
}

/** Double-entry alerts: the same ticket admitted by two phones that could not see each other. */
export function drawAlerts(panel, summary, list, alerts, { devices }) {
  panel.dataset.state = alerts.length ? "raised" : "clear";
  summary.textContent = alerts.length
    ? `${plural(alerts.length, "ticket was", "tickets were")} admitted twice while door phones were offline. Check with the door staff.`
    : "No ticket has been used twice.";
  list.replaceChildren(
    ...alerts.map((alert) =>
      h(
        "li",
        { class: "alert" },
        h("strong", { class: "alert-name" }, alert.name || "A delegate"),
        h(
          "span",
          { class: "alert-detail" },
          `First admitted ${clock(alert.first?.at)} at ${alert.first?.gate ?? "a gate"} (${deviceName(alert.first?.device_id, devices)}), ` +
            `then again ${clock(alert.second?.at)} at ${alert.second?.gate ?? "a gate"} (${deviceName(alert.second?.device_id, devices)}).`,
        ),
      ),
    ),
  );
}

/** Delegates registered but not yet scanned in. */
export function drawNoShows(tbody, summary, people, { registered }) {
  if (!people.length) {
    summary.textContent = registered > 0 ? "Everyone registered has arrived." : "No one has registered yet.";
    tbody.replaceChildren(emptyRow(registered > 0 ? "Everyone is here." : "No registrations yet.", 3));
    return;
  }
  summary.textContent = `${plural(people.length, "delegate has", "delegates have")} not been scanned in yet.`;
  tbody.replaceChildren(
    ...people.map((person) =>
      h(
        "tr",
        {},
        h("td", {}, person.name || "–"),
        h("td", {}, person.organisation || "–"),
        h("td", {}, person.ticket_type ? humanise(person.ticket_type) : "–"),
      ),
    ),
  );
}
