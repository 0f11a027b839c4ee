// The in-call chat: typed messages over the call's data channel, peer to peer. Nothing
// is sent to or kept by the server; the list lives in this page only and is emptied at
// hang-up.

import { MAX_CHAT_CHARS } from "./channel.js";
import { formatClock, t } from "./i18n.js";

export class Chat {
  /**
   * @param {{list: HTMLOListElement, form: HTMLFormElement, input: HTMLInputElement,
   *   button: HTMLButtonElement, send: (message: object) => boolean}} parts
   *   `send` hands a chat message to the data channel; false when it is not open.
   */
  constructor({ list, form, input, button, send }) {
    this.list = list;
    this.input = input;
    this.button = button;
    this.sendMessage = send;
    this.ready = false;
    input.maxLength = MAX_CHAT_CHARS;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.#send();
    });
    input.addEventListener("input", () => this.#enable());
    this.#enable();
  }

  /** Whether the channel is open (sending is possible). */
  setReady(ready) {
    this.ready = ready;
    this.#enable();
  }

  /** Show a message; `mine` for ours, else `name` is who wrote it. */
  add({ text, at, mine, name }) {
    const item = document.createElement("li");
    item.dataset.testid = "chat-message";
    item.dataset.from = mine ? "me" : "them";
    item.className = mine ? "mine" : "theirs";
    const who = document.createElement("span");
    who.className = "who";
    const when = Number.isNaN(Date.parse(at)) ? new Date() : at;
    who.textContent = `${mine ? t("chat.you") : name}, ${formatClock(when)}`;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;  // never HTML: the other side's text is data
    item.append(who, body);
    this.list.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  /** Hang-up: the conversation is gone. */
  clear() {
    this.list.replaceChildren();
    this.input.value = "";
    this.#enable();
  }

  #send() {
    const text = this.input.value.trim();
    if (!text || !this.ready) {
      return;
    }
    const message = { id: crypto.randomUUID(), text, at: new Date().toISOString() };
    if (this.sendMessage(message)) {
      this.add({ text, at: message.at, mine: true });
      this.input.value = "";
      this.#enable();
    }
  }

  #enable() {
    this.button.disabled = !this.ready || this.input.value.trim() === "";
  }
}
