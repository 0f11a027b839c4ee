"""carecall peer LINK: join a session headless, for QA and CI.

Exit status 0 if and only if the peer was admitted, media connected and it decoded at
least --min-frames video frames from the other party; otherwise 1 with a one-line
reason on stderr (for example "refused: 4403 booking_cancelled"), or 2 for bad usage.
A room that the server closes at its scheduled end (4410 after admission) is a normal
end, not a failure. The process always exits, within 10 s of leaving.

LINK may be '-' to read the link from standard input (one line), or give --link-file
PATH instead: a token on the command line is visible to every local user (ps).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from peer.channel import check_chat_text
from peer.client import Peer, PeerError, SessionEnded

EPILOG = """\
examples:
  carecall peer --link-file link.txt --duration 30 --stats-json out.json
  printf '%s\\n' "$CLIENT_LINK" | carecall peer - --video clip.mp4 --min-frames 100
  carecall peer 'http://127.0.0.1:8080/s/ROOM#t=TOKEN' --duration 30
  carecall peer --link-file link.txt --chat 'hello' --chat 'can you hear me?'

The token in a link given on the command line can be read by every local user (ps,
/proc): on a shared machine pass it on standard input ('-', one line; printf is a shell
builtin, so it does not show in ps either) or in a file only you can read (--link-file).
Quote a link given as LINK: the token after '#' is part of it.
"""

# After leaving starts, the process ends within this many seconds whatever still runs.
EXIT_DEADLINE = 6.0
# A link is a few hundred bytes; refuse to read more than this from a file or stdin.
MAX_LINK_BYTES = 16 * 1024


class UsageError(Exception):
    """Bad command-line input: one line on stderr, exit status 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("link", nargs="?", metavar="LINK",
                        help="the join link {public_url}/s/{room_id}#t={token}, or - to "
                             "read it from standard input (one line)")
    parser.add_argument("--link-file", metavar="PATH",
                        help="read the join link from PATH (one line) instead of LINK")
    parser.add_argument("--duration", type=float, default=10.0, metavar="S",
                        help="seconds to stay after media connects, then leave with bye "
                             "(default 10)")
    parser.add_argument("--video", default="synthetic", metavar="synthetic|PATH",
                        help="video to send: a moving test pattern carrying a frame counter "
                             "(default), or a media file read with PyAV")
    parser.add_argument("--no-audio", action="store_true",
                        help="send no audio (default: a 440 Hz tone, or the file's audio)")
    parser.add_argument("--audio-only", action="store_true",
                        help="send no video (the other party's video is still received), "
                             "and report video false, so attendance counts the session "
                             "as audio-only")
    parser.add_argument("--record", metavar="PATH",
                        help="write the media received from the other party to PATH "
                             "(container chosen by the extension, e.g. .mp4, .mkv, .wav)")
    parser.add_argument("--stats-json", metavar="PATH",
                        help="write admitted_at, connected_at, first_frame_at, "
                             "frames_received, frames_sent, audio_frames_received and "
                             "verification_code (plus diagnostics, and from the data "
                             "channel remote_state, remote_quality, quality, "
                             "chat_received and last_frame_size) as JSON to PATH")
    parser.add_argument("--chat", action="append", default=[], metavar="TEXT",
                        help="send TEXT as a chat message (1 to 2000 characters) once "
                             "the call's data channel opens; repeat for several. Chat "
                             "received is printed as 'chat from ROLE: TEXT'")
    parser.add_argument("--min-frames", type=int, default=1, metavar="N",
                        help="video frames that must be decoded from the other party for "
                             "exit status 0 (default 1)")
    parser.add_argument("--relay-only", "--hide-ip", dest="relay_only", action="store_true",
                        help="connect only through the TURN relay the server offers, so the "
                             "other party never learns this machine's address; fails "
                             "clearly when no TURN server is configured. Also on, whatever "
                             "the flag, when the server's welcome asks for relay only (a "
                             "client whose booking system set Hide my IP)")
    parser.add_argument("--connect-timeout", type=float, default=60.0, metavar="S",
                        help="give up if admission or the media connection takes longer "
                             "(default 60; the other party may join late)")


def _say(text: str) -> None:
    print(f"carecall peer: {text}", file=sys.stderr, flush=True)


def _one_link(text: str, source: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"no link in {source}")
    if len(lines) > 1:
        raise UsageError(f"{source} holds {len(lines)} lines; expected one link")
    return lines[0]


def read_link(args: argparse.Namespace) -> str:
    """The link from LINK, standard input (LINK is '-') or --link-file."""
    if args.link_file is not None:
        if args.link is not None:
            raise UsageError("give the link as LINK or with --link-file, not both")
        path = Path(args.link_file)
        try:
            with path.open("rb") as file:
                data = file.read(MAX_LINK_BYTES + 1)
        except FileNotFoundError:
            raise UsageError(f"--link-file: no such file: {path}") from None
        except OSError as error:
            raise UsageError(f"--link-file: cannot read {path}: {error.strerror}") from None
        source = f"--link-file {path}"
    elif args.link == "-":
        if sys.stdin is None:
            raise UsageError("LINK is '-' but there is no standard input")
        # One line, not until end of file: the writer may keep the pipe open.
        data = sys.stdin.buffer.readline(MAX_LINK_BYTES + 1)
        source = "standard input"
    elif args.link is None:
        raise UsageError("no link: give LINK, '-' to read it from standard input, "
                         "or --link-file PATH")
    else:
        return str(args.link)
    if len(data) > MAX_LINK_BYTES:
        raise UsageError(f"{source}: more than {MAX_LINK_BYTES} bytes; expected one link")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
    return _one_link(text, source)


class Exit:
    """The way out: stats and reason written once, then the status, within a deadline.

    ``arm`` is called when the peer starts to leave, with the outcome already decided. From
    then on a daemon thread ends the process with that status after ``EXIT_DEADLINE``
    seconds, whatever still runs: a library's non-daemon thread that was never stopped
    would otherwise keep ``threading._shutdown`` waiting forever.
    """

    def __init__(self, peer: Peer, stats_path: str | None) -> None:
        self._peer, self._stats_path = peer, stats_path
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._status: int | None = None
        self._armed = False

    def arm(self, reason: str | None, deadline: float = EXIT_DEADLINE) -> None:
        """Fix the outcome and start the deadline; later calls change nothing."""
        if self._armed:
            return
        self._armed = True
        self._reason = reason
        threading.Thread(target=self._deadline, args=(deadline,), name="exit-deadline",
                         daemon=True).start()

    def finish(self) -> int:
        """Write the stats and the reason (once); the exit status."""
        with self._lock:
            if self._status is None:
                if self._stats_path:
                    stats = json.dumps(self._peer.stats.to_json(), indent=2) + "\n"
                    try:
                        Path(self._stats_path).write_text(stats)
                    except OSError as error:
                        _say(f"cannot write --stats-json: {error.strerror}")
                if self._reason:
                    print(self._reason, file=sys.stderr, flush=True)
                self._status = 1 if self._reason else 0
            return self._status

    def _deadline(self, seconds: float) -> None:
        threading.Event().wait(seconds)
        if self._status is None:
            _say(f"leaving took over {seconds:g} s; exiting anyway")
        status = self.finish()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)


async def run(args: argparse.Namespace, peer: Peer, done: Exit) -> None:
    """Run the session, then arm ``done`` with the reason it failed (None: success)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reason: str | None = None
    try:
        await peer.start()
        await peer.wait_admitted(args.connect_timeout, stop=stop)
        _say(f"admitted as {peer.role}; waiting for the media connection")
        await peer.wait_connected(args.connect_timeout, stop=stop)
        _say(f"media connected; staying {args.duration:g} s")
        try:
            await peer.stay(args.duration, stop)
        except SessionEnded as ended:
            _say(f"the session is over ({ended}); leaving")
        received = peer.stats.frames_received
        if received < args.min_frames:
            reason = (f"received {received} video frames, fewer than --min-frames "
                      f"{args.min_frames}")
    except PeerError as error:
        reason = str(error)
    except Exception as error:  # a library failure: still one line and exit 1
        reason = f"unexpected error: {type(error).__name__}"
    finally:
        done.arm(reason)
        await peer.leave()
        stats = peer.stats
        if stats.verification_code:
            _say(f"verification code {stats.verification_code}")


def main(args: argparse.Namespace) -> int:
    # Keep aiortc's own logging quiet unless asked for.
    if os.environ.get("CARECALL_LOG_LEVEL") is None:
        import logging

        logging.getLogger("aiortc").setLevel(logging.WARNING)
        logging.getLogger("aioice").setLevel(logging.WARNING)
    if args.duration < 0 or args.min_frames < 0 or args.connect_timeout <= 0:
        _say("--duration and --min-frames must not be negative, --connect-timeout > 0")
        return 2
    try:
        for text in args.chat:
            check_chat_text(text)
    except ValueError as error:
        _say(f"--chat: {error}")
        return 2
    if args.video != "synthetic" and not Path(args.video).is_file():
        _say(f"--video: no such file: {args.video}")
        return 2
    try:
        peer = Peer(read_link(args), video=args.video, audio=not args.no_audio,
                    relay_only=args.relay_only, audio_only=args.audio_only,
                    record=args.record, notify=_say, chat=args.chat)
    except (UsageError, PeerError) as error:
        _say(str(error))
        return 2
    done = Exit(peer, args.stats_json)
    try:
        asyncio.run(run(args, peer, done))
    except KeyboardInterrupt:
        done.arm("interrupted")
    return done.finish()
