#!/usr/bin/env bash
# Sets up vlx on a fresh Linux machine (Python 3.11, no GPU needed): system libraries that
# wheels need, a virtual environment in .venv, torch (CPU build unless one is present),
# then vlx with every sibling's dependencies. Idempotent: re-running skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VLX_VENV:-.venv}

# System packages: open3d needs libusb-1.0; MuJoCo's CPU rendering needs OSMesa.
need=()
libs=$(ldconfig -p)  # read once: `ldconfig -p | grep -q` can fail under pipefail (SIGPIPE)
grep -q 'libusb-1.0.so.0' <<<"$libs" || need+=(libusb-1.0-0)
grep -q 'libOSMesa.so' <<<"$libs" || need+=(libosmesa6)
grep -q 'libGL.so.1' <<<"$libs" || need+=(libgl1)
grep -q 'libgomp.so.1' <<<"$libs" || need+=(libgomp1)
# pointcloud/native: torch's JIT extension builder compiles the fused CPU depth kernel on first
# use with g++ and ninja (without them depth_maps warns once and keeps its torch kernel).
command -v g++ >/dev/null || need+=(g++)
command -v ninja >/dev/null || need+=(ninja-build)
# On a GPU node MuJoCo renders headless through EGL (vlx/runtime.py probes it and falls back to
# OSMesa): libglvnd's libEGL, which dispatches to the NVIDIA driver's EGL vendor library.
if [ -e /dev/nvidia0 ] || [ -e /dev/dri/renderD128 ]; then
  grep -q 'libEGL.so.1' <<<"$libs" || need+=(libegl1)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] apt-get install ${need[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# torchcodec (video decoding) loads FFmpeg 5's shared libraries (the names below are Debian
# 12's). Optional: where apt has no such packages, video/ falls back to decord and PyAV.
ff=()
grep -q 'libavcodec.so.59' <<<"$libs" || ff+=(libavcodec59)
grep -q 'libavformat.so.59' <<<"$libs" || ff+=(libavformat59)
grep -q 'libavutil.so.57' <<<"$libs" || ff+=(libavutil57)
grep -q 'libswscale.so.6' <<<"$libs" || ff+=(libswscale6)
grep -q 'libswresample.so.4' <<<"$libs" || ff+=(libswresample4)
grep -q 'libavdevice.so.59' <<<"$libs" || ff+=(libavdevice59)
grep -q 'libavfilter.so.8' <<<"$libs" || ff+=(libavfilter8)
if [ ${#ff[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "[setup] apt-get install ${ff[*]} (FFmpeg libraries for torchcodec)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${ff[@]}" >/dev/null; } ||
    echo "[setup] FFmpeg 5 libraries not installable here: video/ will decode with decord/PyAV instead of torchcodec"
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip >/dev/null
# Keep a torch the user installed (e.g. a CUDA build); otherwise take the CPU build 2.13.0,
# so that nothing pulls a multi-GB CUDA wheel onto a CPU machine.
if ! "$VPY" -c 'import torch' 2>/dev/null; then
  echo "[setup] pip install torch==2.13.0"
  "$VPY" -m pip install -q torch==2.13.0
fi
echo "[setup] pip install -e .[all]"
"$VPY" -m pip install -q -e '.[all]'
echo "[setup] done: $VENV"
