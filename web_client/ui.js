// Small DOM helpers, and what the page says for each refusal: the reason (from the
// server's error code or close code, docs/contract.md section 4) and a next step.

import { formatTime, t } from "./i18n.js";

export function $(id) {
  const element = document.getElementById(id);
  if (element === null) {
    throw new Error(`the page has no #${id}`);
  }
  return element;
}

/** `{name: element}` for `[[name, id], ...]`: a module's elements, each checked to exist. */
export function elementsById(pairs) {
  return Object.fromEntries(pairs.map(([name, id]) => [name, $(id)]));
}

export function show(element, visible = true) {
  element.hidden = !visible;
}

/** The API's `{"error": {"code", "message"}}` of a refused response, or {} (a proxy's page). */
export async function errorOf(response) {
  try {
    const body = await response.json();
    return body?.error ?? {};
  } catch {
    return {};
  }
}

const TIME_IN_MESSAGE = /(starts|opens) at (\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d))/g;

function timesIn(message) {
  const times = {};
  for (const [, what, iso] of String(message ?? "").matchAll(TIME_IN_MESSAGE)) {
    times[what] = iso;
  }
  return times;
}

function tooEarly(message) {
  const { starts, opens } = timesIn(message);
  if (!starts) {
    return t("refusal.tooEarly");
  }
  const opening = opens ? t("refusal.opensAt", { opens: formatTime(opens) }) : "";
  return t("refusal.tooEarlyAt", { starts: formatTime(starts) }) + opening;
}

// The server's error code → [reason key, next-step key].
const BY_CODE = {
  session_over: ["refusal.over", "next.over"],
  booking_cancelled: ["refusal.cancelled", "next.cancelled"],
  booking_rescheduled: ["refusal.rescheduled", "next.rescheduled"],
  replaced: ["refusal.replaced", null],
  token_missing: ["refusal.invalid", "next.invalid"],
  invalid_token: ["refusal.invalid", "next.invalid"],
  unknown_room: ["refusal.unknownRoom", "next.invalid"],
  not_found: ["refusal.unknownRoom", "next.invalid"],
  wrong_room: ["refusal.wrongRoom", "next.invalid"],
  not_a_party: ["refusal.wrongRoom", "next.invalid"],
  forbidden: ["refusal.wrongRoom", "next.invalid"],
  rate_limited: ["refusal.rateLimited", null],
  origin_not_allowed: ["refusal.origin", null],
  unreachable: ["refusal.unreachable", "next.unreachable"],
};

const BY_CLOSE_CODE = {
  4401: ["refusal.invalid", "next.invalid"],
  4403: ["refusal.notOpen", "next.rescheduled"],
  4404: ["refusal.unknownRoom", "next.invalid"],
  4409: ["refusal.replaced", null],
  4410: ["refusal.notNow", null],
};

/**
 * What to show for a refused or ended join: `{reason, next}`, where `reason` always
 * names why and `next` (or null) says what the person can do now.
 */
export function refusalText({ closeCode, code, message }) {
  if (code === "too_early") {
    return { reason: tooEarly(message), next: null };
  }
  const [reason, next] = BY_CODE[code] ?? BY_CLOSE_CODE[closeCode]
    ?? [null, "next.reload"];
  return {
    reason: reason ? t(reason) : t("refusal.other", { code: code || closeCode }),
    next: next ? t(next) : null,
  };
}

export const MISSING_TOKEN = { closeCode: 4401, code: "token_missing", message: "" };
