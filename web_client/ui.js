// Words and small DOM helpers: what the page says for each state and each refusal.

export function $(id) {
  const element = document.getElementById(id);
  if (element === null) {
    throw new Error(`the page has no #${id}`);
  }
  return element;
}

export function show(element, visible = true) {
  element.hidden = !visible;
}

/** "Tue 24 Nov, 14:00 CET" in `timeZone` (the viewer's own when undefined). */
export function formatTime(iso, timeZone = undefined) {
  const options = { weekday: "short", day: "numeric", month: "short", hour: "2-digit",
    minute: "2-digit", timeZoneName: "short" };
  let format;
  try {
    format = new Intl.DateTimeFormat(undefined, { ...options, timeZone });
  } catch {
    format = new Intl.DateTimeFormat(undefined, options);  // a zone this browser lacks
  }
  return format.format(new Date(iso));
}

export function viewerTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}

const TIME_IN_MESSAGE = /(starts|opens) at (\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d))/g;

function timesIn(message) {
  const times = {};
  for (const [, what, iso] of String(message ?? "").matchAll(TIME_IN_MESSAGE)) {
    times[what] = iso;
  }
  return times;
}

/**
 * The visible sentence for a refused or ended join, from the server's error code and the
 * close code (docs/contract.md section 4). It always names the reason.
 */
export function refusalText({ closeCode, code, message }) {
  switch (code) {
    case "too_early": {
      const { starts, opens } = timesIn(message);
      if (!starts) {
        return "Too early: this session has not started yet. Come back at its start time.";
      }
      const opening = opens ? ` The room opens at ${formatTime(opens)}; reload this page then.`
        : "";
      return `Too early: this session starts at ${formatTime(starts)}.${opening}`;
    }
    case "session_over":
      return "This session is over. Its time window has ended.";
    case "booking_cancelled":
      return "This booking was cancelled, so the call cannot take place.";
    case "booking_rescheduled":
      return "This booking was rescheduled: this link no longer works. Use the link from "
        + "your newest booking message.";
    case "replaced":
      return "This call was opened in another tab or on another device, so it was closed "
        + "here. Continue there, or reload this page to move the call back here.";
    case "token_missing":
    case "invalid_token":
      return "Invalid link: this link is not valid. Open the whole link from your booking "
        + "message.";
    case "unknown_room":
      return "Invalid link: this room does not exist.";
    case "wrong_room":
    case "not_a_party":
      return "Invalid link: this link is not for this session.";
    case "rate_limited":
      return "Too many attempts from this network. Wait a minute, then reload this page.";
    case "origin_not_allowed":
      return "This page was opened from an address that may not join calls.";
    default:
      break;
  }
  switch (closeCode) {
    case 4401:
      return "Invalid link: this link is not valid.";
    case 4403:
      return "This session is not open to this link (it may have been cancelled).";
    case 4404:
      return "Invalid link: this room does not exist.";
    case 4409:
      return "This call was opened in another tab or on another device.";
    case 4410:
      return "This session is not open now.";
    default:
      return `The call could not continue (${code || closeCode}). Reload this page to try `
        + "again.";
  }
}

export const MISSING_TOKEN = { closeCode: 4401, code: "token_missing", message: "" };
