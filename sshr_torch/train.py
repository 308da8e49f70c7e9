"""Command line: ``python -m sshr_torch.train [flags]``, one flag per TrainConfig field.

    python -m sshr_torch.train --her future                  # the DQN with this project's defaults
    python -m sshr_torch.train --preset paper                # the paper's setting as written
    python -m sshr_torch.train --maze keulen_extreme --episodes 300
    python -m sshr_torch.train --maze generated:101x101:seed=3 --total-steps 200000
    python -m sshr_torch.train --env mypkg.envs:MyEnv-v0 --env-kwargs '{"size": 9}'
    python -m sshr_torch.train --resume runs/keulen_easy__dqn__her-future__ss-1__s0__...

Every error a user can cause ends with one line on stderr naming the problem and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import textwrap
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, NoReturn

from sshr_torch.config import PAPER_SETTINGS, PROJECT_CHOICES, TrainConfig, field_docs, flag
from sshr_torch.interrupt import StopRequest

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage block) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see --help).\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser: a flag per TrainConfig field, its help text the field's docstring."""
    parser = _Parser(
        prog="python -m sshr_torch.train",
        description=textwrap.fill(
            "Train a goal-conditioned learner with Smart Start and Hindsight Experience Replay "
            "on a maze or any goal env (--env), or resume a run. Flags left out keep their "
            "defaults (the end of this help says which are the paper's).",
            78,
        ),
        epilog=defaults_note(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    docs = field_docs()
    hints = typing.get_type_hints(TrainConfig)
    for config_field in dataclasses.fields(TrainConfig):
        name, hint = config_field.name, hints[config_field.name]
        kwargs: dict[str, Any] = {
            "help": docs.get(name, ""),
            "default": argparse.SUPPRESS,  # so that --resume can tell which flags were given
            "dest": name,
        }
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["help"] += f" (default: {config_field.default})"
        else:
            kwargs.update(_value_kwargs(hint))
            default = config_field.default
            if default is dataclasses.MISSING:  # a field with a default_factory (env_kwargs)
                default = config_field.default_factory()  # type: ignore[misc]
            kwargs["help"] += f" (default: {_show(default)})"
        parser.add_argument(f"--{flag(name)}", **kwargs)
    return parser


def defaults_note(width: int = 78) -> str:
    """Which defaults are the paper's settings and which are this project's choices, and why
    (the end of ``--help``; the README's "Defaults" says the same)."""
    wrap = functools.partial(textwrap.wrap, break_on_hyphens=False)
    paper = ", ".join(
        f"--{flag(name)}" if value is True else f"--{flag(name)} {value}"
        for name, value in PAPER_SETTINGS.items()
    )
    lines = wrap(f"Defaults: the paper's settings (Sec. V): {paper}.", width)
    lines += wrap(
        "This project's choices, where the paper gives none (evidence: docs/long_mazes.md):",
        width,
    )
    for name, why in PROJECT_CHOICES.items():
        lines += wrap(f"{name}: {why}", width, initial_indent="  ", subsequent_indent="    ")
    lines += wrap(
        "--preset paper runs the paper's setting as written instead; flags given with it win.",
        width,
    )
    return "\n".join(lines)


def _value_kwargs(hint: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # `int | None` and the like
        (hint,) = [arg for arg in args if arg is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return {"choices": list(args), "metavar": "{" + ",".join(args) + "}"}
    if origin is tuple:
        return {"type": args[0], "nargs": "+", "metavar": "N"}
    if origin is dict:
        return {"type": json_object, "metavar": "JSON"}
    return {"type": hint, "metavar": hint.__name__.upper()}


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value)
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given on the command line (``--env-kwargs``); argparse reports the
    ArgumentTypeError in one line."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object ({{...}})")
    return value


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse flags into a validated TrainConfig (a resumed run's saved config with --resume)."""
    from sshr_torch.runlog import RunError
    from sshr_torch.trainer import RESUME_OVERRIDABLE, resume_config

    given = vars(build_parser().parse_args(argv))
    if "hidden_sizes" in given:
        given["hidden_sizes"] = tuple(given["hidden_sizes"])
    if "resume" in given:  # `--resume ""` is an error (resume_config says so), not a new run
        run_dir = given.pop("resume")
        overrides = {k: v for k, v in given.items() if k in RESUME_OVERRIDABLE}
        ignored = sorted(set(given) - set(RESUME_OVERRIDABLE))
        if ignored:
            flags = ", ".join(f"--{flag(name)}" for name in ignored)
            raise RunError(
                f"--resume continues a run with its saved config; drop {flags} "
                "(only --episodes, --total-steps and --quiet may change)."
            )
        return resume_config(run_dir, **overrides)
    return TrainConfig(**given).validate()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        # A first Ctrl-C from here on (torch's import and the start-up included) lets the run
        # start, checkpoint and print its summary as stopped; train() shares this handler.
        with StopRequest():
            config = config_from_args(argv)
            from sshr_torch.trainer import train  # torch loads only once the flags are good

            result = train(config)
    except (ValueError, OSError) as error:  # ConfigError, MazeError and RunError are ValueErrors
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        message = "stopped at once by a second Ctrl-C; the last checkpoint stands."
        print(f"\nerror: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not config.quiet:
        _print_summary(result.summary, result.interrupted)
    return 0


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename:
        return f"{error.strerror or error}: {error.filename}"
    return " ".join(str(error).split())


def _print_summary(summary: dict[str, Any], interrupted: bool) -> None:
    def fmt(value: Any) -> str:
        if value is None:
            return "never"
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = [
        "interrupted: checkpoint saved; continue with --resume " + summary["run_dir"]
        if interrupted
        else "done",
        f"  episodes {summary['episodes']}, env steps {summary['env_steps']}, "
        f"{fmt(summary['sps'])} steps/s over {fmt(summary['wall_s'])} s",
        f"  first goal at step {fmt(summary['first_success_step'])}; "
        f"success rate (last 100 episodes) {fmt(summary['success_rate_last_100'])}, "
        f"mean length {fmt(summary['mean_length_last_100'])}",
        f"  greedy evaluation: success {fmt(summary['eval_success_rate'])}, "
        f"mean length {fmt(summary['eval_mean_length'])}",
        f"  run directory {summary['run_dir']}  (tensorboard --logdir {summary['run_dir']})",
    ]
    print("\n".join(lines))


class _CallableModule(types.ModuleType):
    """Importing this module sets the package's ``train`` attribute to it (Python binds each
    imported submodule on its package), which hides the package's ``train`` function: after
    ``import sshr_torch.train``, ``from sshr_torch import train`` gives this module. Calling
    it calls the function, so that import works whichever was imported first."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from sshr_torch.trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
