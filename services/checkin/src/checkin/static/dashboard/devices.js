// Door phones: the list with last-seen and revoke, and enrolment of a new phone by QR code.
// The device token in the enrolment reply is never kept or shown: the phone gets its own by
// swapping the one-time enrolment code.

import { Refused, Unreachable } from "/static/js/api.js";
import { isSignedOut } from "./api.js";
import { byId, h } from "./dom.js";
import { ago, plural } from "./format.js";

const WATCH_ENROLMENT_MS = 3000;

function base64(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export function parseGates(text) {
  const seen = new Set();
  const gates = [];
  for (const part of String(text).split(",")) {
    const gate = part.replace(/\s+/g, " ").trim();
    if (gate && !seen.has(gate.toLocaleLowerCase("en-GB"))) {
      seen.add(gate.toLocaleLowerCase("en-GB"));
      gates.push(gate);
    }
  }
  return gates;
}

function statusOf(device) {
  if (device.revoked) return { text: "Stopped", tone: "bad" };
  // A phone given its token directly, without scanning the enrolment code, is set up once it is seen.
  if (device.enrolled || device.last_seen) return { text: "Set up", tone: "good" };
  return { text: "Waiting to be set up", tone: "warn" };
}

export class DoorPhones {
  /** `app` gives: client(), signOut(message), devicesChanged(map). */
  constructor(app) {
    this.app = app;
    this.devices = [];
    this.enrolling = null;
    this.watch = null;
    this.revoking = null;
    this.list = byId("devices-list");
    this.summary = byId("devices-summary");
    this.form = byId("enrol-form");
    this.message = byId("enrol-message");
    this.panel = byId("enrolment");
    this.dialog = byId("revoke-dialog");

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.enrol();
    });
    byId("close-enrolment").addEventListener("click", () => this.closeEnrolment());
    byId("copy-enrolment").addEventListener("click", () => this.copyLink());
    this.dialog.addEventListener("close", () => {
      const device = this.revoking;
      this.revoking = null;
      if (device && this.dialog.returnValue === "revoke") this.revoke(device);
    });
  }

  reset() {
    this.devices = [];
    this.closeEnrolment();
    this.list.replaceChildren();
    this.summary.textContent = "No door phones yet.";
    this.message.textContent = "";
  }

  async refresh() {
    const client = this.app.client();
    if (!client) return;
    try {
      this.devices = await client.devices();
    } catch (error) {
      if (isSignedOut(error)) this.app.signOut();
      return;
    }
    if (client !== this.app.client()) return;
    this.app.devicesChanged(new Map(this.devices.map((device) => [device.device_id, device])));
    this.draw();
    this.noticeEnrolment();
  }

  /** Redraws the list; also called every so often so "last seen" stays true. */
  draw() {
    const active = this.devices.filter((device) => !device.revoked);
    this.summary.textContent = this.devices.length
      ? `${active.length ? plural(active.length, "phone") : "No phone"} can scan${active.length < this.devices.length ? `; ${plural(this.devices.length - active.length, "phone")} stopped` : ""}.`
      : "No door phones yet. Add one below, then scan its code with the phone.";
    const ordered = [...this.devices].sort(
      (a, b) => Number(a.revoked) - Number(b.revoked) || a.name.localeCompare(b.name, "en-GB"),
    );
    this.list.replaceChildren(
      ...ordered.map((device) => {
        const status = statusOf(device);
        return h(
          "li",
          { class: `device${device.revoked ? " revoked" : ""}`, "data-device": device.device_id },
          h(
            "div",
            { class: "device-main" },
            h("strong", { class: "device-name" }, device.name),
            h("span", { class: `tag tone-${status.tone}` }, status.text),
          ),
          h("p", { class: "device-gates" }, `Gates: ${(device.gates ?? []).join(", ") || "none"}`),
          h(
            "p",
            { class: "device-seen" },
            device.last_seen ? `Last seen ${ago(device.last_seen)}` : "Not seen yet",
          ),
          device.revoked
            ? null
            : h(
                "button",
                { type: "button", class: "danger small", on: { click: () => this.confirmRevoke(device) } },
                "Stop this phone",
                h("span", { class: "visually-hidden" }, ` (${device.name})`),
              ),
        );
      }),
    );
  }

  confirmRevoke(device) {
    this.revoking = device;
    byId("revoke-name").textContent = device.name;
    this.dialog.returnValue = "";
    this.dialog.showModal();
  }

  async revoke(device) {
    try {
      await this.app.client().revokeDevice(device.device_id);
    } catch (error) {
      if (isSignedOut(error)) return this.app.signOut();
      this.summary.textContent = `Could not stop ${device.name}: ${reason(error)}`;
      return;
    }
    await this.refresh();
  }

  async enrol() {
    const name = byId("device-name").value.replace(/\s+/g, " ").trim();
    const gates = parseGates(byId("device-gates").value);
    if (!name) {
      this.message.textContent = "Give the phone a name, such as “Main entrance phone 1”.";
      byId("device-name").focus();
      return;
    }
    if (!gates.length) {
      this.message.textContent = "Add at least one gate, such as “Main entrance”.";
      byId("device-gates").focus();
      return;
    }
    const tooLong = gates.find((gate) => gate.length > 40);
    if (tooLong || gates.length > 20) {
      this.message.textContent = tooLong
        ? `Shorten the gate name “${tooLong.slice(0, 20)}…”: gate names are up to 40 characters.`
        : "A phone can scan at up to 20 gates.";
      byId("device-gates").focus();
      return;
    }
    this.message.textContent = "";
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    let created;
    try {
      created = await this.app.client().createDevice(name, gates);
    } catch (error) {
      if (isSignedOut(error)) return this.app.signOut();
      this.message.textContent = `The phone was not added: ${reason(error)}`;
      return;
    } finally {
      button.disabled = false;
    }
    this.form.reset();
    this.showEnrolment(created);
    await this.refresh();
  }

  showEnrolment(created) {
    const url = created.enrolment_url || `${location.origin}/scan#enrol=${encodeURIComponent(created.enrolment_code ?? "")}`;
    this.enrolling = { deviceId: created.device_id, name: created.name };
    byId("enrolment-name").textContent = created.name;
    const image = byId("enrolment-qr");
    if (created.enrolment_qr_svg) {
      image.src = `data:image/svg+xml;base64,${base64(created.enrolment_qr_svg)}`;
      image.hidden = false;
    } else {
      image.removeAttribute("src");
      image.hidden = true;
    }
    byId("enrolment-url").value = url;
    byId("enrolment-status").textContent = created.enrolment_qr_svg
      ? "Waiting for the phone to scan the code. The code works once."
      : "Open the link below on the door phone. It works once.";
    this.panel.dataset.state = "waiting";
    this.panel.hidden = false;
    byId("enrolment-heading").setAttribute("tabindex", "-1");
    byId("enrolment-heading").focus();
    clearInterval(this.watch);
    this.watch = setInterval(() => this.refresh(), WATCH_ENROLMENT_MS);
  }

  /** Once the phone has swapped its code, the QR is spent: say so and take it down. */
  noticeEnrolment() {
    if (!this.enrolling) return;
    const device = this.devices.find((candidate) => candidate.device_id === this.enrolling.deviceId);
    if (!device?.enrolled) return;
    clearInterval(this.watch);
    this.watch = null;
    this.panel.dataset.state = "done";
    byId("enrolment-qr").hidden = true;
    byId("enrolment-url").value = "";
    byId("enrolment-status").textContent = `${device.name} is set up and ready to scan.`;
  }

  closeEnrolment() {
    clearInterval(this.watch);
    this.watch = null;
    this.enrolling = null;
    this.panel.hidden = true;
    byId("enrolment-qr").removeAttribute("src");
    byId("enrolment-url").value = "";
  }

  async copyLink() {
    const field = byId("enrolment-url");
    const button = byId("copy-enrolment");
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch {
      field.select();
      button.textContent = "Press Ctrl+C to copy";
    }
    setTimeout(() => {
      button.textContent = "Copy link";
    }, 2500);
  }
}

export function reason(error) {
  if (error instanceof Unreachable) return "the server did not answer. Check the connection and try again.";
  if (error instanceof Refused) return error.message || "the server refused it.";
  return "something went wrong. Try again.";
}
