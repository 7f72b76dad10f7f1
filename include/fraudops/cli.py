"""The ``fraudops`` command: the local stack, the warehouse, and every lifecycle step without Airflow.

Subcommands live next to the code they drive and are imported lazily, so ``fraudops status``
does not pay for importing MLflow, LightGBM or Evidently.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from fraudops.exceptions import FraudopsError

#: command name → "module:attribute" of a click command, imported on first use.
LAZY_COMMANDS: dict[str, str] = {
    "simulate": "fraudops.simulate.commands:simulate",
    "import": "fraudops.simulate.commands:import_cmd",
    "features": "fraudops.features.commands:features",
    "train": "fraudops.pipeline.commands:train",
    "demo": "fraudops.demo:demo",
    "serve": "fraudops.serving.commands:serve",
    "deploy": "fraudops.serving.commands:deploy",
    "release": "fraudops.pipeline.release_cli:release",
    "models": "fraudops.intake.commands:models",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self._available()])

    def _available(self) -> list[str]:
        import importlib.util

        names = []
        for name, target in LAZY_COMMANDS.items():
            module = target.split(":")[0]
            try:
                if importlib.util.find_spec(module) is not None:
                    names.append(name)
            except ModuleNotFoundError:
                continue
        return names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name in self._available():
            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command):
                raise click.ClickException(f"{LAZY_COMMANDS[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FraudopsError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=LazyGroup)
@click.version_option(package_name="fraudops")
def main() -> None:
    """fraudops: retrain, shadow, gate, promote and roll back fraud models."""


@main.command()
@click.option(
    "--profile",
    type=click.Choice(["local", "scale"]),
    default=None,
    help="local: one scoring process (default). scale: scoring replicas behind HAProxy, online state "
    "and shadow streams in Redis, stream shadow workers (FRAUDOPS_SCALE_* size it).",
)
def up(profile: str | None) -> None:
    """Start the local stack (BigQuery emulator, MLflow, scoring, Airflow) and wait until healthy."""
    from fraudops.config import load_settings, profile_file, recorded_profile
    from fraudops.stack.services import Stack, airflow_password

    if profile is not None:
        settings = load_settings()
        running = [s.name for s in Stack(settings).status() if s.running]
        before = recorded_profile(settings.state_dir)
        if running and before != profile:
            raise click.ClickException(
                f"the {before} profile is running ({', '.join(running)}): `fraudops down` first"
            )
        os.environ["FRAUDOPS_PROFILE"] = profile
        path = profile_file(settings.state_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profile)
    stack = Stack.from_env()
    click.echo(f"profile: {stack.settings.profile}")
    states = stack.up()
    _print_status(states)
    password = airflow_password(stack.settings)
    click.echo(
        f"\nAirflow UI: {stack.settings.airflow.url}  login: admin / {password or '(see airflow log)'}"
    )
    click.echo(f"MLflow UI:  {stack.settings.mlflow.tracking_uri}")
    click.echo(
        f"Warehouse:  {stack.settings.warehouse.endpoint or 'BigQuery'} "
        f"project={stack.settings.warehouse.project} dataset={stack.settings.warehouse.dataset}"
    )
    if not all(s.healthy for s in states):
        sys.exit(1)


@main.command()
def down() -> None:
    """Stop every service `fraudops up` started."""
    from fraudops.config import profile_file
    from fraudops.stack.services import Stack

    stack = Stack.from_env()
    stopped = stack.down()
    profile_file(stack.settings.state_dir).unlink(missing_ok=True)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Print service, URL, pid and health; exit 0 only when every service is healthy."""
    from fraudops.stack.services import Stack

    states = Stack.from_env().status()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "service": s.name,
                        "url": s.url,
                        "pid": s.pid,
                        "running": s.running,
                        "healthy": s.healthy,
                    }
                    for s in states
                ]
            )
        )
    else:
        _print_status(states)
    sys.exit(0 if states and all(s.healthy for s in states) else 1)


def _print_status(states: list[Any]) -> None:
    rows = [("SERVICE", "URL", "PID", "HEALTHY")]
    for s in states:
        rows.append((s.name, s.url, str(s.pid or "-"), "yes" if s.healthy else "NO"))
    click.echo(format_table(rows))


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


@main.command()
@click.argument("sql")
@click.option("--param", "-p", multiple=True, help="Query parameter NAME=VALUE (repeatable), used as @NAME.")
@click.option("--format", "fmt", type=click.Choice(["pretty", "json", "csv"]), default="pretty")
@click.option("--max-rows", default=100, show_default=True, help="Rows to print (pretty format).")
def query(sql: str, param: tuple[str, ...], fmt: str, max_rows: int) -> None:
    """Run SQL against the configured warehouse and print the rows (like `bq query`).

    Unqualified table names resolve in the project's dataset, so `fraud.transactions` and
    `transactions` both work.
    """
    from fraudops.warehouse import Warehouse

    params: dict[str, Any] = {}
    for p in param:
        if "=" not in p:
            raise click.BadParameter(f"expected NAME=VALUE, got {p!r}", param_hint="--param")
        name, value = p.split("=", 1)
        params[name] = _parse_value(value)
    rows = Warehouse().query(sql, params)
    if fmt == "json":
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        if rows:
            writer.writerow(rows[0].keys())
        for r in rows:
            writer.writerow(r.values())
        return
    if not rows:
        click.echo("(no rows)")
        return
    header = tuple(rows[0].keys())
    body = [tuple("NULL" if v is None else str(v) for v in r.values()) for r in rows[:max_rows]]
    click.echo(_boxed([header, *body]))
    if len(rows) > max_rows:
        click.echo(f"... {len(rows) - max_rows} more rows")


def _boxed(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = [sep]
    for i, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            lines.append(sep)
    lines.append(sep)
    return "\n".join(lines)


def _parse_value(raw: str) -> Any:
    import datetime as dt

    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return raw


if __name__ == "__main__":
    main()
