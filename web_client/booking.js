// "Book next session": the professional's panel (docs/contract.md section 3, in-call booking).
// It lists the professional's free slots in their time zone (and the viewer's) and books
// one with an idempotency key that is kept for retries of the same slot, so a retried
// request after a lost response never books twice.

import { formatTime, t, viewerTimeZone } from "./i18n.js";
import { errorOf } from "./ui.js";

const DAYS = 14;

/** An element; `i18n` names its text's catalogue key (kept up to date on a language switch). */
function element(tag, attributes = {}, text = "", i18n = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  if (i18n) {
    node.dataset.i18n = i18n;
    node.textContent = t(i18n);
  } else if (text) {
    node.textContent = text;
  }
  return node;
}

export class BookingPanel {
  /**
   * @param {{container: HTMLElement, apiBase: string, room: string, token: string,
   *   onBooked?: (booking: object) => void}} options
   */
  constructor({ container, apiBase, room, token, onBooked = null }) {
    this.onBooked = onBooked;
    this.url = `${apiBase}/api/v1/rooms/${encodeURIComponent(room)}`;
    this.token = token;
    this.timeZone = null;
    this.selected = null;  // {starts_at, ends_at}
    this.attempt = null;   // {starts_at, idempotency_key}: reused when retrying that slot
    this.busy = false;

    this.button = element("button", {
      type: "button", "data-testid": "next-session-button", "aria-expanded": "false",
      "aria-controls": "booking-panel", "data-i18n-attr": "aria-label=booking.openLabel",
      "aria-label": t("booking.openLabel"),
    }, "", "booking.open");
    this.panel = element("section", { id: "booking-panel", class: "panel booking",
      "aria-labelledby": "booking-title" });
    this.panel.hidden = true;
    const title = element("h2", { id: "booking-title" }, "", "booking.title");
    this.note = element("p", { class: "note", role: "status", "aria-live": "polite" });
    this.list = element("fieldset", { class: "slots" });
    this.list.hidden = true;
    this.bookButton = element("button", { type: "button", "data-testid": "book-slot-button",
      class: "primary", "aria-label": t("booking.bookLabel"),
      "data-i18n-attr": "aria-label=booking.bookLabel" }, "", "booking.book");
    this.bookButton.disabled = true;
    this.bookButton.hidden = true;
    this.confirmation = element("p", { "data-testid": "booking-confirmation",
      class: "confirmation", role: "status" });
    this.confirmation.hidden = true;
    this.panel.append(title, this.note, this.list, this.bookButton, this.confirmation);
    container.append(this.panel);

    this.button.addEventListener("click", () => this.toggle());
    this.bookButton.addEventListener("click", () => this.book());
  }

  async toggle() {
    const open = this.panel.hidden;
    this.panel.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (open) {
      await this.load();
    }
  }

  #headers() {
    return { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json" };
  }

  async load() {
    this.note.textContent = t("booking.loading");
    this.list.hidden = true;
    this.bookButton.hidden = true;
    let response;
    try {
      response = await fetch(`${this.url}/next-slots?days=${DAYS}`,
        { headers: this.#headers(), cache: "no-store" });
    } catch {
      this.note.textContent = t("booking.unreachable");
      return;
    }
    if (response.status === 404 || response.status === 405) {
      this.note.textContent = t("booking.unavailable");
      return;
    }
    if (!response.ok) {
      const error = await errorOf(response);
      this.note.textContent = t("booking.loadFailed", { reason: error.message ?? response.status });
      return;
    }
    const body = await response.json();
    this.timeZone = body.timezone;
    this.#render(Array.isArray(body.slots) ? body.slots : []);
  }

  #render(slots) {
    this.list.replaceChildren();
    this.selected = null;
    this.bookButton.disabled = true;
    if (slots.length === 0) {
      this.note.textContent = t("booking.none", { n: DAYS });
      return;
    }
    const viewer = viewerTimeZone();
    this.note.textContent = t("booking.zones", { zone: this.timeZone, local: viewer });
    this.list.append(element("legend", {}, t("booking.legend", { n: DAYS })));
    for (const slot of slots) {
      const option = element("label", { "data-testid": "slot-option", class: "slot" });
      const radio = element("input", { type: "radio", name: "next-slot",
        value: slot.starts_at });
      radio.addEventListener("change", () => {
        this.selected = slot;
        this.bookButton.disabled = false;
      });
      const main = element("span", { class: "slot-time" },
        formatTime(slot.starts_at, this.timeZone));
      const local = element("span", { class: "slot-local" },
        t("booking.local", { time: formatTime(slot.starts_at, viewer) }));
      option.append(radio, main, local);
      this.list.append(option);
    }
    this.list.hidden = false;
    this.bookButton.hidden = false;
  }

  async book() {
    if (this.selected === null || this.busy) {
      return;
    }
    const startsAt = this.selected.starts_at;
    if (this.attempt?.starts_at !== startsAt) {
      this.attempt = { starts_at: startsAt, idempotency_key: crypto.randomUUID() };
    }
    this.busy = true;
    this.bookButton.disabled = true;
    this.note.textContent = t("booking.booking");
    try {
      const response = await fetch(`${this.url}/next-booking`, {
        method: "POST", headers: this.#headers(), body: JSON.stringify(this.attempt),
      });
      if (response.status === 200 || response.status === 201) {
        const booking = await response.json();
        this.attempt = null;
        const at = booking.starts_at ?? startsAt;
        this.confirmation.textContent = t("booking.booked",
          { time: formatTime(at, this.timeZone), local: formatTime(at) });
        this.onBooked?.(booking);
        this.confirmation.hidden = false;
        this.note.textContent = "";
        this.list.hidden = true;
        this.bookButton.hidden = true;
        return;
      }
      const error = await errorOf(response);
      if (response.status === 409 && error.code === "slot_taken") {
        this.attempt = null;
        await this.load();
        this.note.textContent = t("booking.taken");
        return;
      }
      this.note.textContent = t("booking.failed", { reason: error.message ?? response.status });
    } catch {
      // The request may or may not have arrived: a retry sends the same key.
      this.note.textContent = t("booking.retry");
    } finally {
      this.busy = false;
      this.bookButton.disabled = this.selected === null;
    }
  }
}
