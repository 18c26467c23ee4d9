"""The device options a command can take (`rcc eval`, `rcc run`): `--device PRESET|FILE.toml` (or a [device] table in
the `--target` file), `--device-seed`, `--time`, `--faults RATE_OFF,RATE_ON`, `--fault-seed`, `--fault-map`
and `--fault-aware`; and the `Device` and fault map they describe."""

from __future__ import annotations

import argparse

from rcc.backends.device import PRESETS, Device, device_from_dict, load_device, parse_duration, parse_rates
from rcc.backends.faults import FaultMap, load_fault_map
from rcc.backends.target import TargetError, read_toml
from rcc.compiler.commands.common import seed


def add_device_arguments(parser: argparse.ArgumentParser, mapping: bool = True) -> None:
    """The device flags; `mapping` adds `--fault-aware` (for commands that compile)."""
    group = parser.add_argument_group("device", "the cells' non-idealities (default: ideal, exact cells)")
    group.add_argument("--device", metavar="PRESET|FILE.toml",
                       help=f"a preset ({', '.join(PRESETS)}) or a TOML file with a [device] table")
    group.add_argument("--device-seed", type=seed, default=0, metavar="N",
                       help="seed of the device noise (trials use N, N+1, ...; default 0)")
    group.add_argument("--time", metavar="DURATION", help="inference time after programming: 30s, 1h, 2d, 1y")
    group.add_argument("--faults", metavar="RATE_OFF,RATE_ON",
                       help="random stuck-at faults: rates of cells stuck off (reads zero) and on (reads the top level)")
    group.add_argument("--fault-seed", type=seed, metavar="N", help="which chip: the random fault map's seed")
    group.add_argument("--fault-map", metavar="FILE.csv", help="stuck cells listed as array,row,column,off|on")
    if mapping:
        group.add_argument("--fault-aware", action="store_true",
                           help="map rows and columns around the chip's stuck cells (the fault-aware pass)")


def device_from_args(args: argparse.Namespace) -> tuple[Device, FaultMap | None]:
    """The device (`--device`, else the `--target` file's [device] table, else ideal) with the flags applied,
    and the listed fault map of `--fault-map` (None: the device's random one, if any)."""
    if args.device is not None:
        device = load_device(args.device)
    elif getattr(args, "target", None) is not None and "device" in read_toml(args.target, TargetError):
        device = device_from_dict(read_toml(args.target, TargetError), str(args.target))
    else:
        device = Device()
    rates = parse_rates(args.faults) if args.faults is not None else (None, None)
    device = device.with_overrides(time_s=None if args.time is None else parse_duration(args.time),
                                   stuck_off_rate=rates[0], stuck_on_rate=rates[1], fault_seed=args.fault_seed)
    return device, None if args.fault_map is None else load_fault_map(args.fault_map)
