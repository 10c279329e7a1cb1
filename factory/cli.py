"""`factory` command line: `factory stack up|down|status|logs`, `factory env`, `factory demo`, `factory seed`,
`factory registry history <model>`, `factory replay --model M --start T --end T [--rate N] [--labels]`,
`factory view-screenshot [--out PNG] [--model M]`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from factory.processes import PortInUseError, tail
from factory.settings import PROJECT_ROOT, SettingsError, StackSettings
from factory.stack import Stack, StackError


def _print_status(stack: Stack) -> None:
    for status in stack.status():
        pid = str(status.pid) if status.pid else "-"
        print(f"  {status.name:<24} {status.state:<20} pid {pid:<8} {status.url}")


def _cmd_stack(args: argparse.Namespace, stack: Stack) -> int:
    if args.action == "up":
        stack.up(args.services or None)
        if notice := stack.credentials_notice():
            print(f"\n{notice}\n")
        _print_status(stack)
    elif args.action == "down":
        stopped = stack.down(args.services or None)
        print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    elif args.action == "status":
        _print_status(stack)
    elif args.action == "logs":
        for name in args.services or [s.name for s in stack.services]:
            print(f"==> {stack.log_path(name)} <==\n{tail(stack.log_path(name), args.lines)}\n")
    return 0


def _cmd_env(_: argparse.Namespace, stack: Stack) -> int:
    """Print `export` lines so a shell (or the airflow CLI) talks to this stack: eval "$(factory env)"."""
    for key, value in sorted(stack.airflow_env().items()):
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _cmd_demo(args: argparse.Namespace, stack: Stack) -> int:
    from factory.dag_runs import DagRunFailed
    from factory.demo import run_demo

    try:
        return run_demo(stack, keep_up=args.keep_up)
    except DagRunFailed as error:
        print(f"factory demo: {error}", file=sys.stderr)
        return 1


def _cmd_seed(_: argparse.Namespace, stack: Stack) -> int:
    from factory.source_data import seed_demo_sources

    report, files = seed_demo_sources(stack.settings, stack.credentials)
    action = "loaded" if report.written else "already holds"
    print(f"source table {report.table!r} in {report.target}: {action} {report.rows} rows ({report.seconds:.1f} s)")
    if files is not None:
        print(
            f"source files {files.uri_prefix}: {files.written} of {files.files} monthly Parquet files written, "
            f"the others already there ({files.rows} rows, {files.seconds:.1f} s)"
        )
    return 0


def _cmd_registry(args: argparse.Namespace, stack: Stack) -> int:
    from factory.registry import print_history

    return print_history(stack, args.model, as_json=args.json)


def _cmd_view_screenshot(args: argparse.Namespace, stack: Stack) -> int:
    from factory.view_screenshot import BrowserUnavailableError, screenshot_stack

    try:
        screenshot_stack(stack, args.out, args.model)
    except BrowserUnavailableError as error:
        print(f"factory view-screenshot: {error}", file=sys.stderr)
        return 1
    return 0


def _cmd_replay(args: argparse.Namespace, stack: Stack) -> int:
    from factory.replay import run_replay_command

    return run_replay_command(
        stack, model=args.model, start=args.start, end=args.end, rate=args.rate, with_labels=args.labels,
        dataset_spec=args.dataset_spec,
    )  # fmt: skip


def _aware_time(value: str):  # -> datetime
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{value!r} has no timezone (e.g. 2013-04-01T00:00:00Z)")
    return moment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    stack = commands.add_parser("stack", help="start, stop and inspect the local services")
    stack.add_argument("action", choices=["up", "down", "status", "logs"])
    stack.add_argument("services", nargs="*", help="limit to these services (dependencies are included on up)")
    stack.add_argument("-n", "--lines", type=int, default=40, help="log lines to show")
    stack.set_defaults(handler=_cmd_stack)
    env = commands.add_parser("env", help="print the environment that talks to this stack")
    env.set_defaults(handler=_cmd_env)
    demo = commands.add_parser("demo", help="the main job: bring the stack up and run the factory loop")
    demo.add_argument("--keep-up", action="store_true", help="leave the stack running afterwards")
    demo.set_defaults(handler=_cmd_demo)
    seed = commands.add_parser("seed", help="load the demo flights into the operational source database")
    seed.set_defaults(handler=_cmd_seed)
    registry = commands.add_parser("registry", help="the model registry's alias history (who moved what, when, why)")
    registry_actions = registry.add_subparsers(dest="action", required=True)
    history = registry_actions.add_parser("history", help="every alias move of a model, and who held what when")
    history.add_argument("model", help="registered model name, e.g. flights-hgb")
    history.add_argument("--json", action="store_true", help="print the moves and holdings as JSON")
    history.set_defaults(handler=_cmd_registry)
    replay = commands.add_parser(
        "replay", help="send a later window of the demo flights through the gateway (and land its labels)"
    )
    replay.add_argument("--model", required=True, help="model name on the gateway, e.g. flights-hgb")
    replay.add_argument("--start", required=True, type=_aware_time, help="window start, ISO 8601 with timezone")
    replay.add_argument("--end", required=True, type=_aware_time, help="window end (exclusive)")
    replay.add_argument("--rate", type=float, default=None, help="requests per second (default: as fast as possible)")
    replay.add_argument("--labels", action="store_true", help="then write the window's labels to the feedback area")
    replay.add_argument(
        "--dataset-spec", type=Path, default=PROJECT_ROOT / "pipelines/configs/datasets/flights.yaml",
        help="dataset spec of the replayed rows",
    )  # fmt: skip
    replay.set_defaults(handler=_cmd_replay)
    shot = commands.add_parser(
        "view-screenshot", help="log in to the running stack's Airflow UI in headless Chromium, save the factory view"
    )
    shot.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs/factory-view.png", help="PNG to write")
    shot.add_argument("--model", default=None, help="model page to show (default: the first registered model)")
    shot.set_defaults(handler=_cmd_view_screenshot)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        stack = Stack(StackSettings.from_env())
        return args.handler(args, stack)
    except (SettingsError, StackError, PortInUseError) as error:
        print(f"factory: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
