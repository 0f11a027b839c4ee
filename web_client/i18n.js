// Every word the call page shows, in English and German, and the one place that picks the
// language and formats dates and times (through Intl, in the chosen language).
//
// Keys are flat ("status.joining"); `{name}` in a string is replaced by `t(key, {name})`.
// A key with ".one" / ".other" forms is chosen by Intl.PluralRules from the `n` parameter.
// index.html names its static strings with `data-i18n="key"` (text) and
// `data-i18n-attr="aria-label=key;title=key"` (attributes); `translatePage` fills them.
// A key missing from German falls back to English, and test_web_client checks that none
// is missing.

export const LANGUAGES = { en: "English", de: "Deutsch" };
const FALLBACK = "en";
const STORED = "carecall:language";

const en = {
  "page.title": "carecall session",
  "page.noscript": "This call page needs JavaScript.",
  "language.label": "Language",

  "status.checking": "Checking your link…",
  "status.previewing": "Checking your camera and microphone…",
  "status.lobby": "Not in the call yet. Check your camera and microphone, then join.",
  "status.tooEarly": "The room is not open yet. You can check your setup while you wait.",
  "status.roomOpen": "The room is open. You can join now.",
  "status.refused": "Not in the call: see the reason below.",
  "status.ended": "You left the call.",
  "status.joining": "Joining the session…",
  "status.connected": "Call connected.",
  "status.connectedPeerAway": "Call connected. The other person's connection dropped; "
    + "waiting for them…",
  "status.connectedReconnecting": "Call connected. Reconnecting to the server…",
  "status.serverLost": "Connection to the server lost; reconnecting…",
  "status.peerLeftBye": "The other person left the call. You can wait here for them to "
    + "come back.",
  "status.peerLost": "The other person's connection was lost. Waiting for them…",
  "status.waiting": "Waiting for the other person to join…",
  "status.peerAway": "The other person's connection dropped; waiting for them…",
  "status.interrupted": "The connection was interrupted; trying to recover…",
  "status.connecting": "Connecting the call…",
  "status.noPath": "Your devices cannot reach each other yet (the network may block it); still trying…",

  "refused.title": "You cannot join this session",
  "refused.retry": "Try again",
  "refusal.tooEarly": "Too early: this session has not started yet. Come back at its start "
    + "time.",
  "refusal.tooEarlyAt": "Too early: this session starts at {starts}.",
  "refusal.opensAt": " The room opens at {opens}; reload this page then.",
  "refusal.over": "This session is over. Its time window has ended.",
  "refusal.cancelled": "This booking was cancelled, so the call cannot take place.",
  "refusal.rescheduled": "This booking was rescheduled: this link no longer works.",
  "refusal.replaced": "This call was opened in another tab or on another device, so it was "
    + "closed here. Continue there, or reload this page to move the call back here.",
  "refusal.invalid": "Invalid link: this link is not valid.",
  "refusal.unknownRoom": "Invalid link: this room does not exist.",
  "refusal.wrongRoom": "Invalid link: this link is not for this session.",
  "refusal.rateLimited": "Too many attempts from this network. Wait a minute, then reload "
    + "this page.",
  "refusal.origin": "This page was opened from an address that may not join calls.",
  "refusal.notOpen": "This session is not open to this link (it may have been cancelled).",
  "refusal.notNow": "This session is not open now.",
  "refusal.unreachable": "The call service cannot be reached.",
  "refusal.other": "The call could not continue ({code}). Reload this page to try again.",
  "next.cancelled": "Nothing more to do here. To meet, book a new session through your "
    + "usual booking service.",
  "next.rescheduled": "Open the link in your newest booking message: it has the new time.",
  "next.over": "To meet again, book a new session through your usual booking service.",
  "next.invalid": "Open the whole link from your booking message, or ask for a new one.",
  "next.unreachable": "Check your internet connection, then try again.",
  "next.reload": "Reload this page to try again.",

  "media.insecure": "This page must be opened over https to use the camera and microphone.",
  "media.denied": "Camera and microphone access is blocked. Allow it in your browser's site "
    + "settings (the icon beside the address), then reload this page. You can also join "
    + "without them: the other person will not see or hear you.",
  "media.missing": "No camera or microphone was found. Connect one and reload this page, or "
    + "join without them: the other person will not see or hear you.",
  "media.busy": "Your camera or microphone is in use by another app. Close that app and "
    + "reload this page, or join without them.",
  "media.noCamera": "No camera is available: you will join with sound only.",
  "media.noMicrophone": "No microphone is available: the other person will see you but not "
    + "hear you.",
  "noRelay": "Hide my IP needs a relay server, which this service has not configured, so the "
    + "call was not connected: a direct connection would show your IP address to the other "
    + "party. Ask the service to set up a relay server.",
  "noRelayLocal": "Hide my IP needs a relay server, which this service has not configured, "
    + "so the call was not connected: a direct connection would show your IP address to the "
    + "other party. Ask the service to set up a relay server, or reload this page and join "
    + "without \"Hide my IP\".",

  "lobby.title": "Ready to join?",
  "session.with": "Your session with {name}",
  "session.when": "{range} (your time, {zone})",
  "session.countdown": "The room opens in {time}. The Join button turns on by itself then.",
  "session.opensAt": "The room opens at {time}.",
  "devices.camera": "Camera",
  "devices.microphone": "Microphone",
  "devices.none": "None found",
  "devices.numbered": "{noun} {n}",
  "hideIp.label": "Hide my IP address from the other party (connect through a relay)",
  "hideIp.hint": "The call then goes through the service's relay server, which sees your "
    + "address; the other party does not.",
  "join.button": "Join the session",
  "join.withoutMedia": "Join without camera and microphone",
  "join.hintTooEarly": "You can join once the room opens.",

  "precall.title": "Check your setup",
  "precall.preview": "Your camera preview",
  "precall.mic": "Microphone level",
  "precall.micHint": "Say something: the bar should move.",
  "precall.micBlocked": "Click or press a key anywhere on the page to start the microphone "
    + "meter.",
  "precall.micNone": "No microphone: the meter stays empty.",
  "precall.micValue": "{percent} percent",
  "precall.speaker": "Play a test sound",
  "precall.speakerPlaying": "Playing a test sound…",
  "precall.speakerDone": "Did you hear a chime? If not, turn up the volume or check which "
    + "speaker or headphones your device uses.",
  "precall.speakerFailed": "The test sound could not be played on this device.",
  "precall.network": "Network",
  "precall.networkChecking": "Checking your network…",
  "precall.recheck": "Check again",
  "verdict.direct": "Good: a direct connection to the other person is likely.",
  "verdict.relay_only": "A connection through the relay server works; a direct one could "
    + "not be confirmed. The call should work, perhaps a little slower.",
  "verdict.blocked": "Your network seems to block the kind of connection calls need, and no "
    + "relay server answered. The call may not connect: try another network (for example "
    + "your phone's).",
  "verdict.no_servers": "No relay server is configured: the call connects directly, which "
    + "works on most home networks; some office networks block it.",
  "verdict.no_relay": "Hide my IP needs a relay server, which this service has not "
    + "configured: the call cannot connect this way.",
  "verdict.unreachable": "The call server cannot be reached from this network. Check your "
    + "internet connection or firewall.",

  "late.legend": "Running late? Tell the other person",
  "late.minutes": "How late",
  "late.option.one": "about {n} minute",
  "late.option.other": "about {n} minutes",
  "late.button": "Send \"I'm running late\"",
  "late.sent": "Sent at {time}: you are running about {n} minutes late.",
  "late.failed": "Could not send it: {reason}",
  "late.peer.one": "{name} is running late, about {n} minute (sent at {time}).",
  "late.peer.other": "{name} is running late, about {n} minutes (sent at {time}).",
  "party.professional": "The professional",
  "party.client": "Your client",

  "call.videoRegion": "Video",
  "call.remoteVideo": "The other person's video",
  "call.localVideo": "Your own camera",
  "call.controls": "Call controls",
  "call.soundOn": "Turn on the other person's sound",
  "call.soundOnShort": "Turn on sound",
  "call.mute": "Mute",
  "call.muteLabel": "Mute your microphone",
  "call.unmute": "Unmute",
  "call.unmuteLabel": "Unmute your microphone",
  "call.cameraOff": "Camera off",
  "call.cameraOffLabel": "Turn your camera off",
  "call.cameraOn": "Camera on",
  "call.cameraOnLabel": "Turn your camera on",
  "call.hangup": "Hang up",
  "call.hangupLabel": "Hang up and leave the call",
  "call.waiting": "Waiting for the other person…",
  "call.connecting": "Connecting…",
  "call.endsIn.one": "The booked time ends in {n} minute, at {time}.",
  "call.endsIn.other": "The booked time ends in {n} minutes, at {time}.",
  "call.endedAt": "The booked time ended at {time}.",
  "call.yourCameraOff": "Your camera is off",
  "call.remoteCameraOff": "{name} turned the camera off",
  "call.remoteMuted": "{name}'s microphone is off",
  "call.timer": "{elapsed} in · {left} left",
  "call.timerBefore": "Starts in {left}",
  "call.timerOver": "{elapsed} in · booked time over",
  "call.booked": "{name} booked your next session: {when}.",
  "quality.label": "Connection: {grade}",
  "quality.unknown": "Connection: measuring…",
  "quality.good": "good",
  "quality.fair": "fair",
  "quality.poor": "poor",
  "quality.you": "Your side ({grade})",
  "quality.them": "{name}'s side ({grade})",
  "quality.none": "not known yet",
  "quality.figures": "round trip {rtt}, packet loss {loss}, can send {out}, receiving {fps} video at {kbps}",
  "quality.ms": "{n} ms",
  "quality.pct": "{n} %",
  "quality.kbps": "{n} kbit/s",
  "quality.fps": "{n} frames/s",
  "quality.na": "–",
  "audioOnly.start": "Audio only",
  "audioOnly.tile": "Audio only",
  "audioOnly.startLabel": "Stop video and keep only audio, to save bandwidth",
  "audioOnly.stop": "Video on again",
  "audioOnly.stopLabel": "Send and receive video again",
  "audioOnly.suggest": "The connection has been poor for a while. Audio only needs far less bandwidth.",
  "audioOnly.accept": "Switch to audio only",
  "audioOnly.dismiss": "Keep video",
  "audioOnly.both": "Audio only asks the other person to turn off video too",
  "audioOnly.auto": "Switch to audio only by itself when the connection stays poor",
  "audioOnly.mine": "Audio only: video is off to save bandwidth. Press \u201cVideo on again\u201d to go back.",
  "audioOnly.mineAuto": "The connection stayed poor, so the call switched to audio only to save bandwidth. Press \u201cVideo on again\u201d to go back.",
  "audioOnly.theirs": "{name} switched the call to audio only to save bandwidth. Press \u201cVideo on again\u201d to go back.",
  "audioOnly.theirsOff": "{name} turned video back on.",
  "screen.start": "Share screen",
  "screen.startLabel": "Show your screen instead of your camera",
  "screen.stop": "Stop sharing",
  "screen.stopLabel": "Stop sharing your screen and show your camera again",
  "screen.failed": "Screen sharing did not start ({reason}).",
  "chat.title": "Chat",
  "chat.private": "Messages go straight to the other person, encrypted. carecall does not see or keep them; they are gone when you hang up.",
  "chat.messages": "Chat messages",
  "chat.label": "Message",
  "chat.send": "Send",
  "chat.you": "You",
  "verify.title": "Verification code",
  "verify.notVerified": "not verified",
  "verify.hint": "Read the code aloud. If the other person sees a different code, hang up: "
    + "someone may be listening in.",
  "verify.problem": "The code could not be computed for this connection.",

  "hangup.title": "Leave the call?",
  "hangup.text": "The other person will see that you left. You can join again while the "
    + "session's time lasts.",
  "hangup.confirm": "Leave the call",
  "hangup.cancel": "Stay in the call",

  "ended.title": "You left the call",
  "ended.at": "You left at {time}.",
  "ended.booked": "The session was booked for {range}.",
  "ended.next": "Your next session: {when}.",
  "ended.rejoin": "Join again",
  "ended.rejoinLabel": "Join the session again",
  "ended.rejoinUntil": "You can join again until {time}.",
  "ended.closed": "The room is now closed.",
  "ended.support": "Need help?",

  "booking.open": "Book next session",
  "booking.openLabel": "Book the next session",
  "booking.title": "Book the next session",
  "booking.loading": "Looking for free times…",
  "booking.unreachable": "Could not reach the server to find free times. Try again.",
  "booking.unavailable": "Booking the next session from the call is not available here.",
  "booking.loadFailed": "Could not load free times: {reason}",
  "booking.none": "No free times in the next {n} days.",
  "booking.zones": "Times in {zone}, the professional's time zone, and in this device's "
    + "local time ({local}).",
  "booking.zoneSame": "Times in {zone}, your time zone.",
  "booking.days": "Days with free times, next {n} days",
  "booking.dayCount.one": "{n} free time",
  "booking.dayCount.other": "{n} free times",
  "booking.times": "Free times on {day}",
  "booking.timesLength": "Free times on {day} ({minutes} minutes each)",
  "booking.local": "your time: {time}",
  "booking.when": "{day}, {range}",
  "booking.book": "Book this time",
  "booking.bookLabel": "Book the selected time",
  "booking.confirmTitle": "Book this session?",
  "booking.confirmSponsored": "Book {name} for {when} on a sponsored credit ({name} has {n} "
    + "left)?",
  "booking.confirmSelfPaid": "Book {name} for {when} self-paid (no sponsored credit left)?",
  "booking.confirmPlain": "Book the next session for {when}?",
  "booking.confirm": "Confirm",
  "booking.confirmLabel": "Confirm and book this session",
  "booking.back": "Back",
  "booking.backLabel": "Back to the free times, without booking",
  "booking.booking": "Booking…",
  "booking.booked": "Booked: {when}.",
  "booking.bookedSponsored": "Booked: {when}, sponsored.",
  "booking.bookedSelfPaid": "Booked: {when}, self-paid.",
  "booking.taken": "That time was just taken. Pick another time.",
  "booking.failed": "Could not book: {reason}",
  "booking.retry": "Could not reach the server. Press Confirm again to retry.",
};

const de = {
  "page.title": "carecall-Sitzung",
  "page.noscript": "Diese Seite braucht JavaScript.",
  "language.label": "Sprache",

  "status.checking": "Ihr Link wird geprüft…",
  "status.previewing": "Kamera und Mikrofon werden geprüft…",
  "status.lobby": "Noch nicht im Gespräch. Prüfen Sie Kamera und Mikrofon, dann treten Sie "
    + "bei.",
  "status.tooEarly": "Der Raum ist noch nicht offen. Sie können in der Zwischenzeit Ihre "
    + "Technik prüfen.",
  "status.roomOpen": "Der Raum ist offen. Sie können jetzt beitreten.",
  "status.refused": "Nicht im Gespräch: den Grund sehen Sie unten.",
  "status.ended": "Sie haben das Gespräch verlassen.",
  "status.joining": "Sie treten der Sitzung bei…",
  "status.connected": "Gespräch verbunden.",
  "status.connectedPeerAway": "Gespräch verbunden. Die Verbindung der anderen Person ist "
    + "abgebrochen; wir warten auf sie…",
  "status.connectedReconnecting": "Gespräch verbunden. Verbindung zum Server wird "
    + "wiederhergestellt…",
  "status.serverLost": "Verbindung zum Server verloren; sie wird wiederhergestellt…",
  "status.peerLeftBye": "Die andere Person hat das Gespräch verlassen. Sie können hier "
    + "warten, bis sie zurückkommt.",
  "status.peerLost": "Die Verbindung der anderen Person ist verloren gegangen. Wir warten "
    + "auf sie…",
  "status.waiting": "Wir warten, bis die andere Person beitritt…",
  "status.peerAway": "Die Verbindung der anderen Person ist abgebrochen; wir warten auf sie…",
  "status.interrupted": "Die Verbindung wurde unterbrochen; sie wird wiederhergestellt…",
  "status.connecting": "Das Gespräch wird verbunden…",
  "status.noPath": "Ihre Geräte erreichen einander noch nicht (das Netzwerk blockiert es vielleicht); es wird weiter versucht…",

  "refused.title": "Sie können dieser Sitzung nicht beitreten",
  "refused.retry": "Erneut versuchen",
  "refusal.tooEarly": "Zu früh: Diese Sitzung hat noch nicht begonnen. Kommen Sie zur "
    + "Startzeit wieder.",
  "refusal.tooEarlyAt": "Zu früh: Diese Sitzung beginnt am {starts}.",
  "refusal.opensAt": " Der Raum öffnet am {opens}; laden Sie die Seite dann neu.",
  "refusal.over": "Diese Sitzung ist vorbei. Ihr Zeitfenster ist abgelaufen.",
  "refusal.cancelled": "Dieser Termin wurde abgesagt, das Gespräch findet nicht statt.",
  "refusal.rescheduled": "Dieser Termin wurde verschoben: Dieser Link gilt nicht mehr.",
  "refusal.replaced": "Dieses Gespräch wurde in einem anderen Tab oder auf einem anderen "
    + "Gerät geöffnet und deshalb hier beendet. Machen Sie dort weiter, oder laden Sie diese "
    + "Seite neu, um das Gespräch hierher zu holen.",
  "refusal.invalid": "Ungültiger Link: Dieser Link ist nicht gültig.",
  "refusal.unknownRoom": "Ungültiger Link: Diesen Raum gibt es nicht.",
  "refusal.wrongRoom": "Ungültiger Link: Dieser Link gehört nicht zu dieser Sitzung.",
  "refusal.rateLimited": "Zu viele Versuche aus diesem Netz. Warten Sie eine Minute und "
    + "laden Sie die Seite dann neu.",
  "refusal.origin": "Diese Seite wurde von einer Adresse geöffnet, die keinen Gesprächen "
    + "beitreten darf.",
  "refusal.notOpen": "Diese Sitzung ist für diesen Link nicht offen (vielleicht wurde sie "
    + "abgesagt).",
  "refusal.notNow": "Diese Sitzung ist gerade nicht offen.",
  "refusal.unreachable": "Der Gesprächsdienst ist nicht erreichbar.",
  "refusal.other": "Das Gespräch konnte nicht weitergehen ({code}). Laden Sie die Seite "
    + "neu, um es erneut zu versuchen.",
  "next.cancelled": "Hier ist nichts mehr zu tun. Für ein Treffen buchen Sie eine neue "
    + "Sitzung über Ihren gewohnten Buchungsdienst.",
  "next.rescheduled": "Öffnen Sie den Link aus Ihrer neuesten Buchungsnachricht: Er hat die "
    + "neue Zeit.",
  "next.over": "Für ein weiteres Treffen buchen Sie eine neue Sitzung über Ihren gewohnten "
    + "Buchungsdienst.",
  "next.invalid": "Öffnen Sie den vollständigen Link aus Ihrer Buchungsnachricht, oder "
    + "bitten Sie um einen neuen.",
  "next.unreachable": "Prüfen Sie Ihre Internetverbindung und versuchen Sie es dann erneut.",
  "next.reload": "Laden Sie die Seite neu, um es erneut zu versuchen.",

  "media.insecure": "Diese Seite muss über https geöffnet werden, um Kamera und Mikrofon zu "
    + "nutzen.",
  "media.denied": "Der Zugriff auf Kamera und Mikrofon ist blockiert. Erlauben Sie ihn in "
    + "den Website-Einstellungen Ihres Browsers (das Symbol neben der Adresse) und laden Sie "
    + "die Seite neu. Sie können auch ohne beitreten: Die andere Person sieht und hört Sie "
    + "dann nicht.",
  "media.missing": "Keine Kamera und kein Mikrofon gefunden. Schließen Sie eines an und "
    + "laden Sie die Seite neu, oder treten Sie ohne bei: Die andere Person sieht und hört "
    + "Sie dann nicht.",
  "media.busy": "Kamera oder Mikrofon wird von einer anderen App benutzt. Schließen Sie "
    + "diese App und laden Sie die Seite neu, oder treten Sie ohne bei.",
  "media.noCamera": "Keine Kamera verfügbar: Sie treten nur mit Ton bei.",
  "media.noMicrophone": "Kein Mikrofon verfügbar: Die andere Person sieht Sie, hört Sie aber "
    + "nicht.",
  "noRelay": "„IP-Adresse verbergen“ braucht einen Relay-Server, den dieser Dienst nicht "
    + "eingerichtet hat; deshalb wurde das Gespräch nicht verbunden: Eine direkte Verbindung "
    + "würde der anderen Person Ihre IP-Adresse zeigen. Bitten Sie den Dienst, einen "
    + "Relay-Server einzurichten.",
  "noRelayLocal": "„IP-Adresse verbergen“ braucht einen Relay-Server, den dieser Dienst "
    + "nicht eingerichtet hat; deshalb wurde das Gespräch nicht verbunden: Eine direkte "
    + "Verbindung würde der anderen Person Ihre IP-Adresse zeigen. Bitten Sie den Dienst, "
    + "einen Relay-Server einzurichten, oder laden Sie die Seite neu und treten Sie ohne "
    + "„IP-Adresse verbergen“ bei.",

  "lobby.title": "Bereit zum Beitreten?",
  "session.with": "Ihre Sitzung mit {name}",
  "session.when": "{range} (Ihre Zeit, {zone})",
  "session.countdown": "Der Raum öffnet in {time}. Die Schaltfläche zum Beitreten wird dann "
    + "von selbst aktiv.",
  "session.opensAt": "Der Raum öffnet um {time}.",
  "devices.camera": "Kamera",
  "devices.microphone": "Mikrofon",
  "devices.none": "Keines gefunden",
  "devices.numbered": "{noun} {n}",
  "hideIp.label": "Meine IP-Adresse vor der anderen Person verbergen (Verbindung über ein "
    + "Relay)",
  "hideIp.hint": "Das Gespräch läuft dann über den Relay-Server des Dienstes, der Ihre "
    + "Adresse sieht; die andere Person sieht sie nicht.",
  "join.button": "Der Sitzung beitreten",
  "join.withoutMedia": "Ohne Kamera und Mikrofon beitreten",
  "join.hintTooEarly": "Sie können beitreten, sobald der Raum öffnet.",

  "precall.title": "Technik prüfen",
  "precall.preview": "Vorschau Ihrer Kamera",
  "precall.mic": "Mikrofonpegel",
  "precall.micHint": "Sagen Sie etwas: Der Balken sollte sich bewegen.",
  "precall.micBlocked": "Klicken Sie irgendwo auf die Seite oder drücken Sie eine Taste, um "
    + "die Pegelanzeige zu starten.",
  "precall.micNone": "Kein Mikrofon: Die Anzeige bleibt leer.",
  "precall.micValue": "{percent} Prozent",
  "precall.speaker": "Testton abspielen",
  "precall.speakerPlaying": "Testton wird abgespielt…",
  "precall.speakerDone": "Haben Sie einen Gong gehört? Wenn nicht, drehen Sie den Ton lauter "
    + "oder prüfen Sie, welchen Lautsprecher oder Kopfhörer Ihr Gerät nutzt.",
  "precall.speakerFailed": "Der Testton konnte auf diesem Gerät nicht abgespielt werden.",
  "precall.network": "Netzwerk",
  "precall.networkChecking": "Ihr Netzwerk wird geprüft…",
  "precall.recheck": "Erneut prüfen",
  "verdict.direct": "Gut: Eine direkte Verbindung zur anderen Person ist wahrscheinlich.",
  "verdict.relay_only": "Eine Verbindung über den Relay-Server funktioniert; eine direkte "
    + "ließ sich nicht bestätigen. Das Gespräch sollte klappen, vielleicht etwas langsamer.",
  "verdict.blocked": "Ihr Netzwerk scheint die Verbindungsart zu blockieren, die Gespräche "
    + "brauchen, und kein Relay-Server hat geantwortet. Das Gespräch kommt vielleicht nicht "
    + "zustande: Versuchen Sie ein anderes Netz (zum Beispiel das Ihres Telefons).",
  "verdict.no_servers": "Es ist kein Relay-Server eingerichtet: Das Gespräch verbindet sich "
    + "direkt, was in den meisten Heimnetzen funktioniert; manche Firmennetze blockieren es.",
  "verdict.no_relay": "„IP-Adresse verbergen“ braucht einen Relay-Server, den dieser "
    + "Dienst nicht eingerichtet hat: So kommt das Gespräch nicht zustande.",
  "verdict.unreachable": "Der Gesprächsserver ist aus diesem Netz nicht erreichbar. Prüfen "
    + "Sie Ihre Internetverbindung oder Firewall.",

  "late.legend": "Verspäten Sie sich? Sagen Sie es der anderen Person",
  "late.minutes": "Wie spät",
  "late.option.one": "etwa {n} Minute",
  "late.option.other": "etwa {n} Minuten",
  "late.button": "„Ich verspäte mich“ senden",
  "late.sent": "Gesendet um {time}: Sie verspäten sich um etwa {n} Minuten.",
  "late.failed": "Konnte nicht gesendet werden: {reason}",
  "late.peer.one": "{name} verspätet sich um etwa {n} Minute (gesendet um {time}).",
  "late.peer.other": "{name} verspätet sich um etwa {n} Minuten (gesendet um {time}).",
  "party.professional": "Die Fachperson",
  "party.client": "Ihre Klientin oder Ihr Klient",

  "call.videoRegion": "Video",
  "call.remoteVideo": "Video der anderen Person",
  "call.localVideo": "Ihre eigene Kamera",
  "call.controls": "Gesprächssteuerung",
  "call.soundOn": "Ton der anderen Person einschalten",
  "call.soundOnShort": "Ton einschalten",
  "call.mute": "Stumm",
  "call.muteLabel": "Mikrofon stummschalten",
  "call.unmute": "Ton an",
  "call.unmuteLabel": "Mikrofon wieder einschalten",
  "call.cameraOff": "Kamera aus",
  "call.cameraOffLabel": "Kamera ausschalten",
  "call.cameraOn": "Kamera an",
  "call.cameraOnLabel": "Kamera einschalten",
  "call.hangup": "Auflegen",
  "call.hangupLabel": "Auflegen und das Gespräch verlassen",
  "call.waiting": "Wir warten auf die andere Person…",
  "call.connecting": "Verbindung wird hergestellt…",
  "call.endsIn.one": "Die gebuchte Zeit endet in {n} Minute, um {time}.",
  "call.endsIn.other": "Die gebuchte Zeit endet in {n} Minuten, um {time}.",
  "call.endedAt": "Die gebuchte Zeit endete um {time}.",
  "call.yourCameraOff": "Ihre Kamera ist aus",
  "call.remoteCameraOff": "{name} hat die Kamera ausgeschaltet",
  "call.remoteMuted": "Das Mikrofon von {name} ist aus",
  "call.timer": "{elapsed} vergangen · {left} übrig",
  "call.timerBefore": "Beginnt in {left}",
  "call.timerOver": "{elapsed} vergangen · gebuchte Zeit vorbei",
  "call.booked": "{name} hat Ihre nächste Sitzung gebucht: {when}.",
  "quality.label": "Verbindung: {grade}",
  "quality.unknown": "Verbindung: wird gemessen…",
  "quality.good": "gut",
  "quality.fair": "mittel",
  "quality.poor": "schlecht",
  "quality.you": "Ihre Seite ({grade})",
  "quality.them": "Seite von {name} ({grade})",
  "quality.none": "noch unbekannt",
  "quality.figures": "Umlaufzeit {rtt}, Paketverlust {loss}, kann {out} senden, empfängt Video mit {fps} bei {kbps}",
  "quality.ms": "{n} ms",
  "quality.pct": "{n} %",
  "quality.kbps": "{n} kbit/s",
  "quality.fps": "{n} Bildern/s",
  "quality.na": "–",
  "audioOnly.start": "Nur Audio",
  "audioOnly.tile": "Nur Audio",
  "audioOnly.startLabel": "Video beenden und nur Audio behalten, um Bandbreite zu sparen",
  "audioOnly.stop": "Video wieder an",
  "audioOnly.stopLabel": "Wieder Video senden und empfangen",
  "audioOnly.suggest": "Die Verbindung ist seit einer Weile schlecht. Nur Audio braucht viel weniger Bandbreite.",
  "audioOnly.accept": "Zu nur Audio wechseln",
  "audioOnly.dismiss": "Video behalten",
  "audioOnly.both": "Nur Audio bittet die andere Person, ihr Video auch auszuschalten",
  "audioOnly.auto": "Von selbst zu nur Audio wechseln, wenn die Verbindung schlecht bleibt",
  "audioOnly.mine": "Nur Audio: Video ist aus, um Bandbreite zu sparen. Mit \u201eVideo wieder an\u201c geht es zurück.",
  "audioOnly.mineAuto": "Die Verbindung blieb schlecht, darum ist das Gespräch zu nur Audio gewechselt. Mit \u201eVideo wieder an\u201c geht es zurück.",
  "audioOnly.theirs": "{name} hat das Gespräch auf nur Audio umgestellt, um Bandbreite zu sparen. Mit \u201eVideo wieder an\u201c geht es zurück.",
  "audioOnly.theirsOff": "{name} hat Video wieder eingeschaltet.",
  "screen.start": "Bildschirm teilen",
  "screen.startLabel": "Ihren Bildschirm statt Ihrer Kamera zeigen",
  "screen.stop": "Teilen beenden",
  "screen.stopLabel": "Bildschirm nicht mehr teilen und wieder die Kamera zeigen",
  "screen.failed": "Das Teilen des Bildschirms hat nicht begonnen ({reason}).",
  "chat.title": "Chat",
  "chat.private": "Nachrichten gehen direkt und verschlüsselt an die andere Person. carecall sieht und speichert sie nicht; nach dem Auflegen sind sie weg.",
  "chat.messages": "Chat-Nachrichten",
  "chat.label": "Nachricht",
  "chat.send": "Senden",
  "chat.you": "Sie",
  "verify.title": "Prüfcode",
  "verify.notVerified": "nicht geprüft",
  "verify.hint": "Lesen Sie den Code laut vor. Sieht die andere Person einen anderen Code, "
    + "legen Sie auf: Vielleicht hört jemand mit.",
  "verify.problem": "Für diese Verbindung konnte kein Code berechnet werden.",

  "hangup.title": "Gespräch verlassen?",
  "hangup.text": "Die andere Person sieht, dass Sie gegangen sind. Solange die Zeit der "
    + "Sitzung läuft, können Sie wieder beitreten.",
  "hangup.confirm": "Gespräch verlassen",
  "hangup.cancel": "Im Gespräch bleiben",

  "ended.title": "Sie haben das Gespräch verlassen",
  "ended.at": "Sie sind um {time} gegangen.",
  "ended.booked": "Die Sitzung war gebucht für {range}.",
  "ended.next": "Ihre nächste Sitzung: {when}.",
  "ended.rejoin": "Wieder beitreten",
  "ended.rejoinLabel": "Der Sitzung wieder beitreten",
  "ended.rejoinUntil": "Sie können bis {time} wieder beitreten.",
  "ended.closed": "Der Raum ist jetzt geschlossen.",
  "ended.support": "Brauchen Sie Hilfe?",

  "booking.open": "Nächste Sitzung buchen",
  "booking.openLabel": "Die nächste Sitzung buchen",
  "booking.title": "Die nächste Sitzung buchen",
  "booking.loading": "Freie Zeiten werden gesucht…",
  "booking.unreachable": "Der Server war nicht erreichbar. Versuchen Sie es erneut.",
  "booking.unavailable": "Die nächste Sitzung kann hier nicht aus dem Gespräch gebucht "
    + "werden.",
  "booking.loadFailed": "Freie Zeiten konnten nicht geladen werden: {reason}",
  "booking.none": "Keine freien Zeiten in den nächsten {n} Tagen.",
  "booking.zones": "Zeiten in {zone}, der Zeitzone der Fachperson, und in der Ortszeit "
    + "dieses Geräts ({local}).",
  "booking.zoneSame": "Zeiten in {zone}, Ihrer Zeitzone.",
  "booking.days": "Tage mit freien Zeiten, nächste {n} Tage",
  "booking.dayCount.one": "{n} freie Zeit",
  "booking.dayCount.other": "{n} freie Zeiten",
  "booking.times": "Freie Zeiten am {day}",
  "booking.timesLength": "Freie Zeiten am {day} (je {minutes} Minuten)",
  "booking.local": "Ihre Zeit: {time}",
  "booking.when": "{day}, {range}",
  "booking.book": "Diese Zeit buchen",
  "booking.bookLabel": "Die gewählte Zeit buchen",
  "booking.confirmTitle": "Diese Sitzung buchen?",
  "booking.confirmSponsored": "{name} für {when} buchen, mit einem gesponserten Guthaben "
    + "({name} hat noch {n})?",
  "booking.confirmSelfPaid": "{name} für {when} buchen, selbst bezahlt (kein gesponsertes "
    + "Guthaben mehr)?",
  "booking.confirmPlain": "Die nächste Sitzung für {when} buchen?",
  "booking.confirm": "Bestätigen",
  "booking.confirmLabel": "Bestätigen und diese Sitzung buchen",
  "booking.back": "Zurück",
  "booking.backLabel": "Zurück zu den freien Zeiten, ohne zu buchen",
  "booking.booking": "Wird gebucht…",
  "booking.booked": "Gebucht: {when}.",
  "booking.bookedSponsored": "Gebucht: {when}, gesponsert.",
  "booking.bookedSelfPaid": "Gebucht: {when}, selbst bezahlt.",
  "booking.taken": "Diese Zeit wurde gerade vergeben. Wählen Sie eine andere.",
  "booking.failed": "Buchen nicht möglich: {reason}",
  "booking.retry": "Der Server war nicht erreichbar. Drücken Sie erneut auf „Bestätigen“.",
};

export const CATALOGUE = { en, de };

let current = FALLBACK;
let formatLocale = FALLBACK;  // for Intl: the browser's own variant of `current` (en-GB)
const listeners = [];

export function language() {
  return current;
}

/** The first of the browser's languages (or the stored choice) that the catalogue has. */
export function chooseLanguage(preferred = navigator.languages ?? [navigator.language]) {
  let stored = null;
  try {
    stored = localStorage.getItem(STORED);
  } catch {
    // storage may be off (private mode): the browser's languages decide
  }
  for (const tag of [stored, ...preferred]) {
    const base = String(tag ?? "").toLowerCase().split("-")[0];
    if (base in CATALOGUE) {
      return base;
    }
  }
  return FALLBACK;
}

/** Switch the page's language; `remember` keeps a choice the person made. */
export function setLanguage(lang, { remember = false } = {}) {
  current = lang in CATALOGUE ? lang : FALLBACK;
  const preferred = navigator.languages ?? [navigator.language];
  formatLocale = preferred.find((tag) => String(tag).toLowerCase().split("-")[0] === current)
    ?? current;
  if (remember) {
    try {
      localStorage.setItem(STORED, current);
    } catch {
      // not remembered: the page still switches
    }
  }
  document.documentElement.lang = current;
  translatePage();
  for (const listener of listeners) {
    listener(current);
  }
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

function lookup(key) {
  return CATALOGUE[current][key] ?? en[key];
}

/** The string for `key` in the current language, with `{name}` parameters filled in. */
export function t(key, params = {}) {
  let text = lookup(key);
  if (text === undefined && "n" in params) {
    const form = new Intl.PluralRules(formatLocale).select(Number(params.n));
    text = lookup(`${key}.${form}`) ?? lookup(`${key}.other`);
  }
  if (text === undefined) {
    console.error(`carecall: no string for ${key}`);
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params
    ? String(params[name]) : whole));
}

/** Fill the page's `data-i18n` texts and `data-i18n-attr` attributes. */
export function translatePage(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of element.dataset.i18nAttr.split(";")) {
      const [attribute, key] = pair.split("=");
      element.setAttribute(attribute.trim(), t(key.trim()));
    }
  }
  document.title = t("page.title");
}

// -- dates and times, in the current language ------------------------------------------

function dateFormat(options, timeZone) {
  try {
    return new Intl.DateTimeFormat(formatLocale, { ...options, timeZone });
  } catch {
    return new Intl.DateTimeFormat(formatLocale, options);  // a zone this browser lacks
  }
}

const DAY_AND_TIME = { weekday: "short", day: "numeric", month: "short", hour: "2-digit",
  minute: "2-digit" };

/** "Tue 24 Nov, 14:00 CET" in `timeZone` (the viewer's own when undefined). */
export function formatTime(iso, timeZone = undefined) {
  return dateFormat({ ...DAY_AND_TIME, timeZoneName: "short" }, timeZone)
    .format(new Date(iso));
}

/** "14:05" (the viewer's zone): for times the viewer just lived through. */
export function formatClock(iso) {
  return dateFormat({ hour: "2-digit", minute: "2-digit" }).format(new Date(iso));
}

/** "Tue 24 Nov, 10:00–10:50" in the viewer's zone. */
export function formatRange(startIso, endIso) {
  const format = dateFormat(DAY_AND_TIME);
  const start = new Date(startIso);
  const end = new Date(endIso);
  return typeof format.formatRange === "function" ? format.formatRange(start, end)
    : `${format.format(start)} – ${format.format(end)}`;
}

/** "Tue 9 Dec" (en-GB), "Tue, Dec 9" (en-US), "Di., 9. Dez." (de): the day in `timeZone`. */
export function formatDay(iso, timeZone = undefined) {
  return dateFormat({ weekday: "short", day: "numeric", month: "short" }, timeZone)
    .format(new Date(iso));
}

/** A key that is the same for two instants on the same calendar day in `timeZone`. */
export function dayKey(iso, timeZone = undefined) {
  const parts = dateFormat({ year: "numeric", month: "2-digit", day: "2-digit" }, timeZone)
    .formatToParts(new Date(iso));
  return ["year", "month", "day"].map((type) => parts.find((p) => p.type === type)?.value)
    .join("-");
}

/** "10:00–10:50" (en-GB, de) or "10:00 – 10:50 AM" (en-US) in `timeZone`; with
 * `zoneName`, the zone's short name too ("10:00–10:50 CET"). */
export function formatClockRange(startIso, endIso, timeZone = undefined,
  { zoneName = false } = {}) {
  const options = { hour: "numeric", minute: "2-digit" };
  const format = dateFormat(zoneName ? { ...options, timeZoneName: "short" } : options,
    timeZone);
  const start = new Date(startIso);
  const end = new Date(endIso);
  return typeof format.formatRange === "function" ? format.formatRange(start, end)
    : `${format.format(start)} – ${format.format(end)}`;
}

/** "4:05" or "1:02:05" for a count-down of `ms`. */
export function formatDuration(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}`
    : `${minutes}:${seconds}`;
}

export function viewerTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}
