// "Book next session": the professional's panel (docs/contract.md section 3, in-call booking;
// docs/web_client.md). Three steps, as a therapist books between two sentences:
//
//   pick a day (`slot-day`, the free times counted) → pick a time (`slot-option`) and press
//   `book-slot-button` → a question naming the client, the day, the range and the funding,
//   answered with Confirm (`book-confirm-button`) or Back (`book-cancel-button`).
//
// Only Confirm sends the POST. Days are calendar days in the professional's zone; times
// are formatted in the viewer's locale, with the viewer's own time beside them only when
// the two zones show different clocks. The idempotency key is kept for retries of the
// same slot, so a retried request after a lost response never books twice.

import {
  dayKey, formatClockRange, formatDay, onLanguageChange, t, viewerTimeZone,
} from "./i18n.js";
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

/** A button whose text and accessible name come from the catalogue. */
function button(testid, textKey, labelKey, className = "") {
  const attributes = { type: "button", "data-testid": testid, "aria-label": t(labelKey),
    "data-i18n-attr": `aria-label=${labelKey}` };
  if (className) {
    attributes.class = className;
  }
  return element("button", attributes, "", textKey);
}

/** The free slots grouped by calendar day in `timeZone`, in order: [{key, slots}]. */
export function groupByDay(slots, timeZone) {
  const days = new Map();
  for (const slot of slots) {
    const key = dayKey(slot.starts_at, timeZone);
    if (!days.has(key)) {
      days.set(key, []);
    }
    days.get(key).push(slot);
  }
  return [...days].map(([key, daySlots]) => ({ key, slots: daySlots }));
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
    this.client = { name: "", credits: null, minutes: null };  // from next-slots
    this.days = [];        // [{key, slots}]
    this.sameClock = true; // the viewer's clock reads like the professional's
    this.day = null;       // the chosen day's key
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

    this.picker = element("div", { class: "picker" });
    this.picker.hidden = true;
    this.dayList = element("fieldset", { class: "days" });
    this.dayLegend = element("legend");
    this.list = element("fieldset", { class: "slots" });
    this.bookButton = button("book-slot-button", "booking.book", "booking.bookLabel",
      "primary");
    this.bookButton.disabled = true;
    this.picker.append(this.dayList, this.list, this.bookButton);

    this.confirmStep = element("div", { class: "confirm-step", role: "group",
      "aria-labelledby": "booking-question", "data-testid": "booking-confirm-step" });
    this.confirmStep.hidden = true;
    this.question = element("p", { id: "booking-question", class: "question" });
    const actions = element("div", { class: "actions" });
    this.confirmButton = button("book-confirm-button", "booking.confirm",
      "booking.confirmLabel", "primary");
    this.backButton = button("book-cancel-button", "booking.back", "booking.backLabel");
    actions.append(this.confirmButton, this.backButton);
    this.confirmStep.append(this.question, actions);

    this.confirmation = element("p", { "data-testid": "booking-confirmation",
      class: "confirmation", role: "status", tabindex: "-1" });
    this.confirmation.hidden = true;
    this.booked = null;  // {booking, slot}: what the confirmation says
    this.panel.append(title, this.note, this.picker, this.confirmStep, this.confirmation);
    container.append(this.panel);

    this.button.addEventListener("click", () => this.toggle());
    this.bookButton.addEventListener("click", () => this.ask());
    this.confirmButton.addEventListener("click", () => this.book());
    this.backButton.addEventListener("click", () => this.back());
    this.confirmStep.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.busy) {
        event.preventDefault();
        this.back();
      }
    });
    onLanguageChange(() => this.#redraw());
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
    this.picker.hidden = true;
    this.confirmStep.hidden = true;
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
    // A gate without these fields (older than the panel) still books: the question then
    // names neither the client nor the funding.
    this.client = {
      name: typeof body.client_first_name === "string" ? body.client_first_name : "",
      credits: Number.isInteger(body.sponsored_credits_left) ? body.sponsored_credits_left
        : null,
      minutes: Number.isInteger(body.session_minutes) ? body.session_minutes : null,
    };
    this.days = groupByDay(Array.isArray(body.slots) ? body.slots : [], this.timeZone);
    this.sameClock = this.#clocksAgree();
    if (!this.days.some((day) => day.key === this.day)) {
      this.day = this.days[0]?.key ?? null;
    }
    const day = this.days.find((d) => d.key === this.day);
    if (!day?.slots.some((slot) => slot.starts_at === this.selected?.starts_at)) {
      this.selected = null;
    }
    this.#render();
  }

  /** True when the viewer's clock reads like the professional's for every free time. */
  #clocksAgree() {
    const viewer = viewerTimeZone();
    return viewer === this.timeZone || this.days.every((day) => day.slots.every((slot) =>
      dayKey(slot.starts_at, viewer) === day.key
      && formatClockRange(slot.starts_at, slot.ends_at, viewer)
        === formatClockRange(slot.starts_at, slot.ends_at, this.timeZone)));
  }

  /** "Tue 9 Dec, 10:00–10:50" in the professional's zone, the zone named if clocks differ. */
  #when(slot) {
    return t("booking.when", { day: formatDay(slot.starts_at, this.timeZone),
      range: formatClockRange(slot.starts_at, slot.ends_at, this.timeZone,
        { zoneName: !this.sameClock }) });
  }

  /** The viewer's own time for `slot` ("your time: 09:00–09:50"), or "" if clocks agree. */
  #local(slot) {
    if (this.sameClock) {
      return "";
    }
    const viewer = viewerTimeZone();
    const range = formatClockRange(slot.starts_at, slot.ends_at, viewer);
    const time = dayKey(slot.starts_at, viewer) === dayKey(slot.starts_at, this.timeZone)
      ? range : t("booking.when", { day: formatDay(slot.starts_at, viewer), range });
    return t("booking.local", { time });
  }

  /** `when` plus the viewer's own time in brackets when it differs. */
  #whenWithLocal(slot) {
    const local = this.#local(slot);
    return local ? `${this.#when(slot)} (${local})` : this.#when(slot);
  }

  #render() {
    this.dayList.replaceChildren();
    this.list.replaceChildren();
    this.bookButton.disabled = this.selected === null;
    if (this.days.length === 0) {
      this.note.textContent = t("booking.none", { n: DAYS });
      this.picker.hidden = true;
      return;
    }
    this.note.textContent = this.sameClock ? t("booking.zoneSame", { zone: this.timeZone })
      : t("booking.zones", { zone: this.timeZone, local: viewerTimeZone() });
    this.dayLegend.textContent = t("booking.days", { n: DAYS });
    this.dayList.append(this.dayLegend);
    const days = element("div", { class: "day-buttons" });
    for (const day of this.days) {
      const chosen = day.key === this.day;
      const pick = element("button", { type: "button", class: "day", "data-testid": "slot-day",
        "data-day": day.key, "aria-pressed": String(chosen) });
      pick.append(element("span", { class: "day-name" }, formatDay(day.slots[0].starts_at,
        this.timeZone)), element("span", { class: "day-count" },
        t("booking.dayCount", { n: day.slots.length })));
      pick.addEventListener("click", () => this.pickDay(day.key));
      days.append(pick);
    }
    this.dayList.append(days);
    this.#renderTimes();
    this.picker.hidden = false;
  }

  #renderTimes() {
    this.list.replaceChildren();
    const day = this.days.find((d) => d.key === this.day);
    if (!day) {
      return;
    }
    const name = formatDay(day.slots[0].starts_at, this.timeZone);
    this.list.append(element("legend", {}, this.client.minutes === null
      ? t("booking.times", { day: name })
      : t("booking.timesLength", { day: name, minutes: this.client.minutes })));
    const zoneName = !this.sameClock;
    for (const slot of day.slots) {
      const option = element("label", { "data-testid": "slot-option", class: "slot" });
      const radio = element("input", { type: "radio", name: "next-slot",
        value: slot.starts_at });
      radio.checked = slot.starts_at === this.selected?.starts_at;
      radio.addEventListener("change", () => {
        this.selected = slot;
        this.bookButton.disabled = false;
      });
      const main = element("span", { class: "slot-time" },
        formatClockRange(slot.starts_at, slot.ends_at, this.timeZone, { zoneName }));
      option.append(radio, main);
      const local = this.#local(slot);
      if (local) {
        option.append(element("span", { class: "slot-local" }, local));
      }
      this.list.append(option);
    }
  }

  /** Show the times of day `key` and put focus on the first (or the chosen) one. */
  pickDay(key) {
    if (key !== this.day) {
      this.day = key;
      this.selected = null;
      this.bookButton.disabled = true;
    }
    for (const pick of this.dayList.querySelectorAll("[data-testid=slot-day]")) {
      pick.setAttribute("aria-pressed", String(pick.dataset.day === key));
    }
    this.#renderTimes();
    (this.list.querySelector("input:checked") ?? this.list.querySelector("input"))?.focus();
  }

  /** The question for the chosen time: whom, when and how it is paid. */
  #question(slot) {
    const when = this.#whenWithLocal(slot);
    const { name, credits } = this.client;
    if (!name || credits === null) {
      return t("booking.confirmPlain", { when });
    }
    return credits > 0 ? t("booking.confirmSponsored", { name, when, n: credits })
      : t("booking.confirmSelfPaid", { name, when });
  }

  /** `book-slot-button`: ask before booking; focus on Confirm. */
  ask() {
    if (this.selected === null || this.busy) {
      return;
    }
    this.question.textContent = this.#question(this.selected);
    this.note.textContent = "";
    this.picker.hidden = true;
    this.confirmStep.hidden = false;
    this.confirmButton.disabled = false;
    this.confirmButton.focus();
  }

  /** Back: the times again, the choice kept, focus on the book button; nothing is sent. */
  back() {
    this.confirmStep.hidden = true;
    this.picker.hidden = false;
    this.#render();
    this.bookButton.focus();
  }

  /** Redraw what is on screen in the new language. */
  #redraw() {
    if (this.timeZone === null) {
      return;
    }
    if (!this.picker.hidden) {
      this.#render();
    }
    if (!this.confirmStep.hidden && this.selected !== null) {
      this.question.textContent = this.#question(this.selected);
    }
    if (this.booked !== null) {
      this.confirmation.textContent = this.#bookedText(this.booked);
    }
  }

  #bookedText({ booking, slot }) {
    const when = this.#whenWithLocal({ starts_at: booking.starts_at ?? slot.starts_at,
      ends_at: booking.ends_at ?? slot.ends_at });
    const key = { sponsored: "booking.bookedSponsored", private: "booking.bookedSelfPaid" }[
      booking.funding] ?? "booking.booked";
    return t(key, { when });
  }

  /** Confirm: the POST, with the key kept for this slot so a retry cannot book twice. */
  async book() {
    if (this.selected === null || this.busy) {
      return;
    }
    const slot = this.selected;
    if (this.attempt?.starts_at !== slot.starts_at) {
      this.attempt = { starts_at: slot.starts_at, idempotency_key: crypto.randomUUID() };
    }
    this.busy = true;
    this.confirmButton.disabled = true;
    this.backButton.disabled = true;
    this.note.textContent = t("booking.booking");
    try {
      const response = await fetch(`${this.url}/next-booking`, {
        method: "POST", headers: this.#headers(), body: JSON.stringify(this.attempt),
      });
      if (response.status === 200 || response.status === 201) {
        const booking = await response.json();
        this.attempt = null;
        this.selected = null;
        this.booked = { booking, slot };
        this.confirmation.textContent = this.#bookedText(this.booked);
        this.onBooked?.(booking);
        this.confirmation.hidden = false;
        this.note.textContent = "";
        this.confirmStep.hidden = true;
        this.picker.hidden = true;
        this.confirmation.focus();
        return;
      }
      const error = await errorOf(response);
      if (response.status === 409 && error.code === "slot_taken") {
        this.attempt = null;
        this.selected = null;
        await this.load();
        this.note.textContent = t("booking.taken");
        (this.list.querySelector("input")
          ?? this.dayList.querySelector("[data-testid=slot-day]"))?.focus();
        return;
      }
      this.note.textContent = t("booking.failed", { reason: error.message ?? response.status });
    } catch {
      // The request may or may not have arrived: a retry sends the same key.
      this.note.textContent = t("booking.retry");
    } finally {
      this.busy = false;
      this.confirmButton.disabled = false;
      this.backButton.disabled = false;
    }
  }
}
