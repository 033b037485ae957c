#!/usr/bin/env bash
# Installs the system tools cyberhost needs at run time: ffmpeg (MP4 output).
# Debian/Ubuntu via apt-get; elsewhere it says what to install.
set -euo pipefail
if command -v ffmpeg >/dev/null 2>&1; then exit 0; fi
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
else
  echo "tools/setup.sh: please install ffmpeg (e.g. 'brew install ffmpeg')" >&2
  exit 1
fi
