"""Regenerate (or check) the committed Python stubs for the kubelet protocols.

The stubs are committed so that installing the package never needs grpcio-tools;
`--check` regenerates into a scratch directory and fails when the committed files
differ, so a .proto edit without `make proto` cannot land.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

SRC = Path(__file__).resolve().parent.parent / "src"
PROTO_ROOT = SRC / "space_dra" / "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    # mypy-protobuf's plugins are console scripts next to this interpreter.
    plugins = Path(sys.executable).parent
    for proto in proto_files():
        args = [
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"-I{include}",
            f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--mypy_out=quiet:{out_dir}",
            f"--mypy_grpc_out=quiet:{out_dir}",
            str(proto.relative_to(SRC)),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed for {proto}")


def generated_files(root: Path) -> set[Path]:
    return {
        p.relative_to(root)
        for p in (root / "space_dra" / "proto").rglob("*")
        if p.name.endswith(GENERATED_SUFFIXES)
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        generate(scratch)
        fresh = generated_files(scratch)
        committed = generated_files(SRC)
        if args.check:
            stale = sorted(
                str(p)
                for p in fresh | committed
                if p not in fresh
                or p not in committed
                or not filecmp.cmp(scratch / p, SRC / p, shallow=False)
            )
            if stale:
                print("stale generated stubs (run `make proto`):", *stale, sep="\n  ")
                return 1
            return 0
        for rel in committed - fresh:
            (SRC / rel).unlink()
        for rel in fresh:
            shutil.copyfile(scratch / rel, SRC / rel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
