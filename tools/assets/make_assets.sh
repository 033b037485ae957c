#!/usr/bin/env bash
# Regenerates the bundled default inputs of `cyberhost generate`:
#   engine/assets/reference.png  a drawn half-body figure (ImageMagick)
#   engine/assets/speech.wav     ~2 s of synthetic speech (espeak-ng, 16 kHz mono 16-bit)
# Needs: imagemagick (convert), espeak-ng, sox is not required.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=engine/assets
mkdir -p "$out"
convert -size 256x256 xc:'#6fa8dc' \
  -fill '#3d5a80' -draw 'rectangle 0,200 256,256' \
  -fill '#e07a5f' -draw 'roundrectangle 70,120 186,256 30,30' \
  -fill '#f2cc8f' -draw 'rectangle 114,100 142,125' \
  -fill '#f2cc8f' -draw 'ellipse 128,70 34,42 0,360' \
  -fill '#3d405b' -draw 'ellipse 128,40 36,18 180,360' \
  -fill '#222222' -draw 'circle 116,68 119,68' -draw 'circle 140,68 143,68' \
  -fill '#9b2226' -draw 'ellipse 128,92 10,4 0,360' \
  -fill '#e07a5f' -draw 'polygon 70,135 40,200 55,210 85,150' -draw 'polygon 186,135 216,200 201,210 171,150' \
  -fill '#f2cc8f' -draw 'circle 45,208 56,208' -draw 'circle 211,208 222,208' \
  -strip "$out/reference.png"
raw="$(mktemp --suffix=.wav)"
espeak-ng -v en-us -s 165 -w "$raw" "Hello. I am a talking avatar."
# Resample to 16 kHz mono 16-bit with ffmpeg for a small, canonical file.
ffmpeg -y -loglevel error -i "$raw" -ac 1 -ar 16000 -sample_fmt s16 -bitexact "$out/speech.wav"
rm -f "$raw"
ls -l "$out"
