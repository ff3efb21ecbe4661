#!/usr/bin/env python3
"""Generates the schema modules loopwarden/v1/*_pb2.py into this package, for packaging.

The repository's CMake build does this by itself, into <build>/python (see sdk/CMakeLists.txt);
this script is for ``pip install sdk/python`` on a machine without that build::

    python3 sdk/python/generate.py            # protoc from PATH, sdk/proto -> sdk/python
    pip install sdk/python

It runs ``protoc --python_out`` on sdk/proto/loopwarden/v1/*.proto (or ``python -m
grpc_tools.protoc`` if there is no protoc and grpcio-tools is installed) and adds
loopwarden/v1/__init__.py. Use a protoc no newer than the protobuf runtime you install: code
from protoc 3.20/3.21 (Debian bookworm) runs on protobuf >= 3.20, code from a newer protoc needs
a runtime at least as new as it.
"""

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def protoc_command(explicit):
    if explicit:
        return [explicit]
    found = shutil.which("protoc")
    if found:
        return [found]
    if importlib.util.find_spec("grpc_tools") is None:  # grpcio-tools ships a protoc
        sys.exit("generate.py: no protoc on PATH and no grpcio-tools; install protobuf-compiler "
                 "(Debian/Ubuntu) or pass --protoc PATH")
    return [sys.executable, "-m", "grpc_tools.protoc"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto-dir", default=os.path.join(HERE, os.pardir, "proto"),
                        help="directory holding loopwarden/v1/*.proto (default: sdk/proto)")
    parser.add_argument("--out", default=HERE,
                        help="where loopwarden/v1/*_pb2.py go (default: sdk/python)")
    parser.add_argument("--protoc", help="the protoc executable (default: from PATH)")
    args = parser.parse_args()

    proto_dir = os.path.abspath(args.proto_dir)
    protos = sorted(glob.glob(os.path.join(proto_dir, "loopwarden", "v1", "*.proto")))
    if not protos:
        sys.exit(f"generate.py: no .proto files in {proto_dir}/loopwarden/v1")
    out = os.path.abspath(args.out)
    package = os.path.join(out, "loopwarden", "v1")
    os.makedirs(package, exist_ok=True)
    command = protoc_command(args.protoc) + [
        f"--proto_path={proto_dir}", f"--python_out={out}", *protos]
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit(f"generate.py: protoc failed (exit {result.returncode}): {' '.join(command)}")
    init = os.path.join(package, "__init__.py")
    if not os.path.exists(init):
        with open(init, "w", encoding="utf-8"):
            pass
    print(f"generated {len(protos)} modules into {package}")


if __name__ == "__main__":
    main()
