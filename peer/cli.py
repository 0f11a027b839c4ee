"""carecall peer LINK: join a session headless, for QA and CI.

Exit status 0 if and only if the peer was admitted, media connected and it decoded at
least --min-frames video frames from the other party; otherwise 1 with a one-line
reason on stderr (for example "refused: 4403 booking_cancelled"), or 2 for bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from peer.client import Peer, PeerError

EPILOG = """\
examples:
  carecall peer 'http://127.0.0.1:8080/s/ROOM#t=TOKEN' --duration 30 --stats-json out.json
  carecall peer "$CLIENT_LINK" --video clip.mp4 --record received.mp4 --min-frames 100

Quote the link: the token after '#' is part of it.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("link", help="the join link: {public_url}/s/{room_id}#t={token}")
    parser.add_argument("--duration", type=float, default=10.0, metavar="S",
                        help="seconds to stay after media connects, then leave with bye "
                             "(default 10)")
    parser.add_argument("--video", default="synthetic", metavar="synthetic|PATH",
                        help="video to send: a moving test pattern carrying a frame counter "
                             "(default), or a media file read with PyAV")
    parser.add_argument("--no-audio", action="store_true",
                        help="send no audio (default: a 440 Hz tone, or the file's audio)")
    parser.add_argument("--record", metavar="PATH",
                        help="write the media received from the other party to PATH "
                             "(container chosen by the extension, e.g. .mp4, .mkv, .wav)")
    parser.add_argument("--stats-json", metavar="PATH",
                        help="write admitted_at, connected_at, first_frame_at, "
                             "frames_received, frames_sent, audio_frames_received and "
                             "verification_code (plus diagnostics) as JSON to PATH")
    parser.add_argument("--min-frames", type=int, default=1, metavar="N",
                        help="video frames that must be decoded from the other party for "
                             "exit status 0 (default 1)")
    parser.add_argument("--connect-timeout", type=float, default=60.0, metavar="S",
                        help="give up if admission or the media connection takes longer "
                             "(default 60; the other party may join late)")


def _say(text: str) -> None:
    print(f"carecall peer: {text}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, peer: Peer) -> str | None:
    """Run the session; the reason it failed, or None."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reason: str | None = None
    try:
        await peer.start()
        await peer.wait_admitted(args.connect_timeout)
        _say(f"admitted as {peer.role}; waiting for the media connection")
        await peer.wait_connected(args.connect_timeout)
        _say(f"media connected; staying {args.duration:g} s")
        await peer.stay(args.duration, stop)
        received = peer.stats.frames_received
        if received < args.min_frames:
            reason = (f"received {received} video frames, fewer than --min-frames "
                      f"{args.min_frames}")
    except PeerError as error:
        reason = str(error)
    finally:
        await peer.leave()
        stats = peer.stats
        if stats.verification_code:
            _say(f"verification code {stats.verification_code}")
    return reason


def main(args: argparse.Namespace) -> int:
    # Keep aiortc's own logging quiet unless asked for.
    if os.environ.get("CARECALL_LOG_LEVEL") is None:
        import logging

        logging.getLogger("aiortc").setLevel(logging.WARNING)
        logging.getLogger("aioice").setLevel(logging.WARNING)
    if args.duration < 0 or args.min_frames < 0 or args.connect_timeout <= 0:
        _say("--duration and --min-frames must not be negative, --connect-timeout > 0")
        return 2
    if args.video != "synthetic" and not Path(args.video).is_file():
        _say(f"--video: no such file: {args.video}")
        return 2
    try:
        peer = Peer(args.link, video=args.video, audio=not args.no_audio, record=args.record)
    except PeerError as error:
        _say(str(error))
        return 2
    reason = asyncio.run(run(args, peer))
    if args.stats_json:
        try:
            Path(args.stats_json).write_text(json.dumps(peer.stats.to_json(), indent=2) + "\n")
        except OSError as error:
            _say(f"cannot write --stats-json: {error.strerror}")
    if reason:
        print(reason, file=sys.stderr, flush=True)
        return 1
    return 0
