"""The ``sonic-bridge`` command: demo (the main job), doctor. Errors are one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from sonic_bridge.fake.model import FakeError
from sonic_bridge.host.config import BridgeConfig, FakeOptions
from sonic_bridge.settings import SessionSettings


def _bridge_config(args: argparse.Namespace) -> BridgeConfig:
    session = SessionSettings(model_id=args.model, voice=args.voice, turn_sensitivity=args.turn_sensitivity)
    return BridgeConfig(
        session=session,
        backend=args.backend,
        region=args.region,
        endpoint=args.endpoint,
        ca_file=args.ca_file,
        profile=args.profile,
        worker_python=args.worker_python,
        fake=FakeOptions(seed=args.seed, scenario=args.scenario),
    )


def _add_session_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend", choices=["fake", "aws"], default="fake", help="fake Sonic (default) or the real service"
    )
    p.add_argument("--model", default="amazon.nova-2-sonic-v1:0", help="Nova Sonic model id")
    p.add_argument("--voice", default="matthew")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--endpoint", help="https:// endpoint override (e.g. the fake server)")
    p.add_argument("--ca-file", help="CA bundle to trust for --endpoint")
    p.add_argument("--profile", help="AWS shared-config profile")
    p.add_argument("--worker-python", help="interpreter for the worker (default: this one)")
    p.add_argument("--turn-sensitivity", choices=["HIGH", "MEDIUM", "LOW"], default="MEDIUM")
    p.add_argument("--seed", type=int, default=1, help="fake Sonic seed")
    p.add_argument("--scenario", help="fake Sonic scenario file (JSON or YAML)")


def cmd_demo(args: argparse.Namespace) -> int:
    from sonic_bridge.cli.demo import default_script, format_table, load_input, run_demo, stderr_progress

    config = _bridge_config(args)
    if args.camera:
        return _camera_demo(args, config)
    rate = 16000
    utterance = None
    if args.input:
        utterance, rate = load_input(Path(args.input))
    script = default_script(rate, utterance)
    out = Path(args.output_dir)
    stderr_progress(
        f"demo: {config.backend} backend, model {config.session.model_id}, host at {rate} Hz, "
        f"20 ms cycles; writing to {out}/"
    )
    engines = ["sonic", "cascade"] if args.engine == "both" else [args.engine]
    results = {}
    for engine in engines:  # the same conversation, through each engine in turn
        folder = out / engine if len(engines) > 1 else out
        if len(engines) > 1:
            stderr_progress(f"engine {engine}: writing to {folder}/")
        engine_config = BridgeConfig.from_json({**config.to_json(), "engine": engine})
        results[engine] = run_demo(engine_config, script, rate, folder, progress=stderr_progress)
    print(format_table(results))
    for engine in engines:
        folder = out / engine if len(engines) > 1 else out
        print(f"\n{engine}: reply audio: {folder / 'reply.wav'}   transcript: {folder / 'transcript.txt'}   "
              f"figures: {folder / 'summary.json'}")
    unanswered = [engine for engine, result in results.items()
                  if not result.turns or any(t.first_audio is None and not t.interrupted for t in result.turns)]
    if unanswered:
        sys.stderr.write(f"sonic-bridge: error: not every turn was answered ({', '.join(unanswered)})\n")
        return 1
    return 0


def _camera_demo(args: argparse.Namespace, config: BridgeConfig) -> int:
    import dataclasses

    from sonic_bridge.cli.camera_demo import QUESTION, run_camera_demo
    from sonic_bridge.cli.demo import load_input, stderr_progress
    from sonic_bridge.vision.settings import VisionSettings

    config = dataclasses.replace(config, vision=VisionSettings(enabled=True, model_id=args.vision_model))
    recording = None
    if args.input:
        audio, rate = load_input(Path(args.input))
        if rate != 16000:
            import soxr

            audio = soxr.resample(audio, rate, 16000).astype("float32")
        recording = audio
    out = Path(args.output_dir)
    stderr_progress(f"demo --camera: {config.backend} backend, camera {args.camera}, vision model "
                    f"{config.vision.model_id}; writing to {out}/")
    look = run_camera_demo(config, args.camera, out, recording, progress=stderr_progress)
    if look is None:
        sys.stderr.write("sonic-bridge: error: the avatar never looked (see the transcript)\n")
        return 1
    print(f"Q: {look.question or QUESTION}\nA: {look.answer or 'camera unavailable: ' + look.error}")
    print(f"\nlook: {out / 'look.json'}   transcript: {out / 'transcript.txt'}   camera: {out}/camera.png")
    return 0 if look.answer else 1


def _open_failures() -> dict[str, FakeError]:
    from sonic_bridge.fake.wire import INVALID_MODEL

    return {
        "access_denied": FakeError("AccessDeniedException", "You don't have access to the model with the specified "
                                   "model ID."),
        "invalid_model": FakeError("ValidationException", INVALID_MODEL),
        "unavailable": FakeError("ServiceUnavailableException", "Service unavailable. Try again later."),
    }


OPEN_FAILURES = _open_failures()


FAKE_SECRET_ENV = "SONIC_BRIDGE_FAKE_SECRET"


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a positive finite number (argparse names the option in its error)."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return value

    return parse


def _verify_secret(args: argparse.Namespace) -> str | None:
    """The signing secret: --verify-secret, else --verify-secret-file, else $SONIC_BRIDGE_FAKE_SECRET."""
    if args.verify_secret is not None and args.verify_secret_file is not None:
        raise ValueError("give --verify-secret or --verify-secret-file, not both")
    if args.verify_secret_file is not None:
        try:
            secret = Path(args.verify_secret_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--verify-secret-file {args.verify_secret_file} cannot be read: {exc}") from None
        if not secret:
            raise ValueError(f"--verify-secret-file {args.verify_secret_file} is empty")
        return secret
    if args.verify_secret is not None:
        return str(args.verify_secret)
    return os.environ.get(FAKE_SECRET_ENV) or None


def cmd_fake_server(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import signal
    import tempfile

    from sonic_bridge.fake.scenario import Scenario
    from sonic_bridge.fake.server import FakeSonicServer, Limits, make_certificates

    scenario = Scenario.load(args.scenario) if args.scenario else Scenario()
    scenario = dataclasses.replace(scenario, seed=args.seed if args.seed is not None else scenario.seed,
                                   time_scale=scenario.time_scale * args.time_scale)
    if args.max_content_bytes is not None:
        scenario = dataclasses.replace(scenario, max_content_bytes=args.max_content_bytes)
    limits = Limits(idle_timeout=args.idle_timeout, stall_timeout=args.stall_timeout,
                    max_event_bytes=args.max_event_bytes, max_buffered_input=args.max_buffered_input,
                    max_streams_per_connection=args.max_streams_per_connection,
                    max_connections=args.max_connections)
    secret = _verify_secret(args)
    if bool(args.cert) != bool(args.key):
        raise ValueError("--cert and --key go together")
    ca_path = None
    generated: tempfile.TemporaryDirectory[str] | None = None  # removed again when the server stops
    if args.cert:
        cert, key = Path(args.cert), Path(args.key)
    else:
        if args.cert_dir is None:
            generated = tempfile.TemporaryDirectory(prefix="sonic-fake-ca-")
        folder = Path(args.cert_dir or generated.name)  # type: ignore[union-attr]
        ca_path, cert, key = make_certificates(folder, args.san or ["localhost", "127.0.0.1", "::1"])

    async def serve() -> None:
        server = FakeSonicServer(scenario, verify_secret=secret, error=OPEN_FAILURES.get(args.fail_open),
                                 limits=limits)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):  # as Ctrl-C: stop cleanly, remove the generated key
            loop.add_signal_handler(signum, stop.set)
        port = await server.start(args.host, args.port, cert, key)
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"LISTENING https://{host}:{port}", flush=True)
        if ca_path:
            print(f"CA {ca_path}", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
        sys.stderr.write("sonic-bridge: fake server stopped\n")
    except KeyboardInterrupt:
        sys.stderr.write("sonic-bridge: fake server stopped\n")
    finally:
        if generated is not None:
            generated.cleanup()
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from sonic_bridge.cli.doctor import Check, run_checks

    config = _bridge_config(args)
    if args.via_sdk:
        config = BridgeConfig.from_json({**config.to_json(), "fake": {**config.to_json()["fake"], "via_sdk": True}})
    if args.vision:
        import dataclasses

        from sonic_bridge.vision.settings import VisionSettings

        config = dataclasses.replace(config, vision=VisionSettings(enabled=True, model_id=args.vision))

    def report(check: Check) -> None:
        mark = "ok     " if check.ok else "PROBLEM"
        print(f"{mark} {check.name}: {check.detail}")
        if not check.ok and check.fix:
            print(f"        fix: {check.fix}")

    healthy = run_checks(config, report)
    print("all good" if healthy else "problems found")
    return 0 if healthy else 1


def cmd_worker_env(args: argparse.Namespace) -> int:
    from sonic_bridge.host.worker_env import WorkerEnvError, create

    def progress(line: str) -> None:
        sys.stderr.write(f"worker-env: {line}\n")

    try:
        python = create(args.dir, args.python, args.source, args.extras, progress)
    except WorkerEnvError as exc:
        raise RuntimeError(str(exc)) from None
    progress(f"ready; bridges on this machine use it when worker_python is not set{_default_note(args.dir)}")
    print(python)
    return 0


def _default_note(env_dir: str | None) -> str:
    from sonic_bridge.host.launch import default_worker_env_dir

    if env_dir is None or os.path.abspath(env_dir) == default_worker_env_dir():
        return ""
    return f" only if it is the default place ({default_worker_env_dir()}); else set worker_python to the path below"


def cmd_bench(args: argparse.Namespace) -> int:
    from sonic_bridge.bench.report import run
    from sonic_bridge.cli.demo import stderr_progress

    out = Path(args.out)
    run(out, args.quick, stderr_progress)
    print((out / "summary.md").read_text())
    print(f"results: {out / 'results.json'}   plots: {out / 'transports.png'}, {out / 'scale.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sonic-bridge", description="Never-blocking Nova Sonic bridge")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO (worker logs included)")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a simulated avatar host talks through the bridge (fake Sonic by default)")
    _add_session_options(demo)
    demo.add_argument("--input", help="WAV file to speak (any rate or width); default: a synthesized voice")
    demo.add_argument("--output-dir", default="demo-output", help="where reply.wav, transcript.txt go")
    demo.add_argument("--engine", choices=["sonic", "cascade", "both"], default="sonic",
                      help="Nova Sonic (default), the cascade (Transcribe -> Nova -> Polly), or both one after "
                      "the other with their figures side by side")
    demo.add_argument("--camera", nargs="?", const="synthetic", metavar="IMAGE",
                      help="show the avatar a camera (synthetic coloured frames, or an image/animated GIF file) "
                      "and ask what it sees; prints and saves the answer (look.json)")
    demo.add_argument("--vision-model", default="us.amazon.nova-2-lite-v1:0", help="with --camera: the Converse "
                      "model that looks (us.amazon.nova-pro-v1:0, us.amazon.nova-lite-v1:0, ...)")
    demo.set_defaults(func=cmd_demo)
    doctor = sub.add_parser("doctor", help="check interpreters, SDK, credentials, model access and a round trip")
    _add_session_options(doctor)
    doctor.add_argument("--via-sdk", action="store_true", help="with the fake backend: go through the real SDK")
    doctor.add_argument("--vision", nargs="?", const="us.amazon.nova-2-lite-v1:0", metavar="MODEL",
                        help="also check access to the camera's vision model (default us.amazon.nova-2-lite-v1:0)")
    doctor.set_defaults(func=cmd_doctor)
    bench = sub.add_parser("bench", help="transports, bridge overhead, worker cost and scale, side by side")
    bench.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    bench.add_argument("--out", default="bench-output", help="folder for results.json, plots, summary.md")
    bench.set_defaults(func=cmd_bench)
    worker_env = sub.add_parser(
        "worker-env", help="make the Python >= 3.12 environment the worker runs in; prints its interpreter",
        description="Create (or update) a venv with this sonic-bridge version and its aws extra, check it as a "
        "bridge launches it, and print its interpreter for worker_python. Made at the default place "
        "($SONIC_BRIDGE_WORKER_ENV, else ~/.local/share/sonic-bridge/worker-VERSION), bridges on a host below "
        "Python 3.12 find it without worker_python.")
    worker_env.add_argument("--python", help="the Python >= 3.12 to build it on (default: PATH, then pyenv)")
    worker_env.add_argument("--dir", help="where to make it (default: the place bridges look)")
    worker_env.add_argument("--from", dest="source", help="a wheel or source folder to install instead of the "
                            "registry's sonic-bridge of this version (offline and development use)")
    worker_env.add_argument("--extras", default="aws", help="extras to install (default: aws; e.g. aws,fake)")
    worker_env.set_defaults(func=cmd_worker_env)
    fake = sub.add_parser(
        "fake-server", help="the fake Nova Sonic over HTTP/2 + TLS, for any Nova Sonic client",
        description="Serve the fake Nova Sonic on https://HOST:PORT until Ctrl-C, SIGTERM or SIGHUP (each removes "
        "the generated certificate folder). It is bounded like a shared service: a malformed event is answered "
        "with an exception on its own stream, and clients that hold input, stop reading or stay idle are dropped "
        "after the limits below.")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8443, help="0 picks a free port")
    fake.add_argument("--cert", help="server certificate (PEM); default: a generated test CA and certificate")
    fake.add_argument("--key", help="server private key (PEM)")
    fake.add_argument("--san", action="append", help="names for the generated certificate (repeatable)")
    fake.add_argument("--cert-dir", help="where the generated CA and certificate go (default: a temp folder, "
                      "removed when the server stops)")
    fake.add_argument("--scenario", help="scenario file (JSON or YAML)")
    fake.add_argument("--seed", type=int)
    fake.add_argument("--time-scale", type=_positive(float), default=1.0, help="multiply every service duration")
    fake.add_argument("--verify-secret", metavar="SECRET",
                      help="check the SigV4 event signature chain with this secret key (visible to every user in "
                      "process listings: prefer --verify-secret-file or $" + FAKE_SECRET_ENV + ")")
    fake.add_argument("--verify-secret-file", metavar="PATH",
                      help="as --verify-secret, the secret read from this file (one line); without either, $"
                      + FAKE_SECRET_ENV + " is used when set")
    limits = fake.add_argument_group("limits per client (as a shared service bounds its clients)")
    limits.add_argument("--idle-timeout", type=_positive(float), default=60.0, metavar="S",
                        help="close a connection with no open stream and no complete request or event for this "
                        "long, or whose TLS handshake takes longer (default: 60)")
    limits.add_argument("--stall-timeout", type=_positive(float), default=10.0, metavar="S",
                        help="reset a stream when the client has not taken one of its events in this time (a zero "
                        "flow-control window), freeing its place in the quota; drop a connection that reads nothing "
                        "this long (default: 10)")
    limits.add_argument("--max-event-bytes", type=_positive(int), default=1024 * 1024, metavar="N",
                        help="largest input event message; a longer one is refused on its stream (default: 1 MiB)")
    limits.add_argument("--max-buffered-input", type=_positive(int), default=8 * 1024 * 1024, metavar="N",
                        help="input one connection may have held for incomplete events and open text blocks, all "
                        "its streams together; the stream that goes past it is refused (default: 8 MiB)")
    limits.add_argument("--max-content-bytes", type=_positive(int), metavar="N",
                        help="text of one content block (default: the scenario's max_content_bytes, 1 MiB)")
    limits.add_argument("--max-streams-per-connection", type=_positive(int), default=100, metavar="N",
                        help="concurrent streams one connection may open (default: 100); the service's quota of "
                        "streams (the scenario's max_streams, 20) counts all connections together")
    limits.add_argument("--max-connections", type=_positive(int), default=256, metavar="N",
                        help="open connections; more are closed at once (default: 256)")
    fake.add_argument("--fail-open", choices=sorted(OPEN_FAILURES), help="answer every request with this error")
    fake.set_defaults(func=cmd_fake_server)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.func(args)
        return code
    except (ValueError, RuntimeError, OSError) as exc:
        sys.stderr.write(f"sonic-bridge: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("sonic-bridge: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
