"""What several commands share: the target flags (one name per concept: ``--targets`` where a command takes several,
``--target`` where it takes one; the old spellings are accepted for one release with a deprecation message), the
target-specific options each target declares (lmliqa.targets.Option), and help text read from the registries."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import targets
from ..targets import Stage

DEPRECATED_UNTIL = "0.2"     # the release after which the old spellings are refused


class DeprecatedFlag(argparse.Action):
    """An old spelling of a flag: stores into the new flag's destination and says so on stderr."""

    def __init__(self, option_strings, dest, new: str, convert=None, **kwargs) -> None:
        self.new, self.convert = new, convert
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"lmliqa: warning: {option_string} is deprecated; use {self.new} (the old spelling is accepted until "
              f"lmliqa {DEPRECATED_UNTIL})", file=sys.stderr)
        setattr(namespace, self.dest, self.convert(values) if self.convert else values)


def add_targets_flag(parser: argparse.ArgumentParser, stage: Stage, old: str | None = "--formats") -> None:
    """--targets T1,T2 (default: every target with STAGE), and the deprecated OLD spelling."""
    names = targets.names(stage)
    parser.add_argument("--targets", default=",".join(names), help=f"comma-separated targets (default: all: "
                                                                  f"{','.join(names)})")
    if old:
        parser.add_argument(old, dest="targets", action=DeprecatedFlag, new="--targets", help=argparse.SUPPRESS)


def add_target_flag(parser: argparse.ArgumentParser, help: str, old: str | None = "--backend") -> None:
    """--target T (one target; a runtime's name is accepted too), and the deprecated OLD spelling."""
    choices = [t.name for t in targets.targets(reference=True)]
    parser.add_argument("--target", choices=choices, help=help)
    if old:
        parser.add_argument(old, dest="target", action=DeprecatedFlag, new="--target",
                            convert=lambda v: targets.get(v).name, help=argparse.SUPPRESS)


def add_target_options(parser: argparse.ArgumentParser, *stages: Stage) -> None:
    """One flag per target option of STAGES (lmliqa.targets), its help naming the targets it applies to (an option
    two stages share, such as the Qualcomm target's --socs, is one flag)."""
    owners: dict[str, list[str]] = {}
    options = {}
    for stage in stages:
        for t in targets.targets(stage):
            for o in t.options_for(stage):
                if t.name not in owners.setdefault(o.name, []):
                    owners[o.name].append(t.name)
                options.setdefault(o.name, o)
    group = parser.add_argument_group("target options (an option for a target not chosen is an error)")
    for name, o in options.items():
        help_ = f"[{', '.join(owners[name])}] {o.help}"
        if o.is_flag:
            group.add_argument(o.flag, dest=name, action="store_true", help=help_)
        else:
            group.add_argument(o.flag, dest=name, type=o.type, choices=o.choices, default=None,
                               help=help_ + (f" (default {o.default})" if o.default is not None else ""))


def target_options(args: argparse.Namespace, stage: Stage) -> dict[str, Any]:
    """The target options of STAGE as given on the command line (None / False: not given)."""
    return {o.name: getattr(args, o.name) for t in targets.targets(stage) for o in t.options_for(stage)}


def chosen_targets(args: argparse.Namespace, stage: Stage) -> list[targets.Target]:
    return targets.parse_targets(args.targets, stage)


def device_help() -> str:
    """What --device means, per target that names its devices (from the registry)."""
    return "the target's device: " + "; ".join(f"{t.title} {'/'.join(t.device_names)}"
                                               for t in targets.targets(reference=True) if t.device_names)


def checkpoint_path(value: str | None) -> str | None:
    """A --checkpoint value: a file, or 'default' for the checkpoint of the model that ships in the package."""
    if value != "default":
        return value
    from ..default_model import default_artifact

    return str(default_artifact("torch"))


def add_scope_flag(parser: argparse.ArgumentParser) -> None:
    """--float-scope: what INT8 keeps in float (lmliqa.scope), for the commands that quantize."""
    from ..scope import OP_CATEGORIES, REGION_CATEGORIES

    parser.add_argument("--float-scope",
                        help=f"categories kept in float, comma-separated: {', '.join(OP_CATEGORIES)} and the "
                             f"network's regions ({', '.join(REGION_CATEGORIES)}); 'default' = the backbone's default "
                             "(lmliqa info lists it); 'none'. Not given: each target's ladder (the default scope, "
                             "then wider ones while its INT8 artifact fails its gate; README \"Quantization\")")


CHECKPOINT_HELP = "the FP32 checkpoint (.safetensors; 'default': the checkpoint of the model in the package)"


def add_platform_flag(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """--platform P (where the network executes; lmliqa.platforms), or --platforms P1,P2 where a command checks
    artifacts on several."""
    from .. import platforms

    about = "; ".join(f"{p.name}: {p.title}" for p in platforms.platforms())
    if several:
        parser.add_argument("--platforms", default=platforms.NATIVE,
                            help=f"comma-separated platforms to run each artifact on ({about}; default native)")
    else:
        parser.add_argument("--platform", default=platforms.NATIVE, choices=platforms.names(),
                            help=f"where the network executes ({about})")
