#!/usr/bin/env bash
# Make the built-in voicemail prompts (gateway/assets/*.wav) from text.
# Needs Debian's espeak-ng and sox. The output is 8 kHz mono 16-bit PCM WAV,
# the format pjsua's file player takes without resampling.
#   bash scripts/make-prompts.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=gateway/assets
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

greeting="Hello. Nobody can take your call right now. \
Please leave your name, your number and a short message after the tone, \
and we will call you back as soon as possible."

espeak-ng -v en-gb -s 150 -w "$tmp/greeting.wav" "$greeting"
sox "$tmp/greeting.wav" -r 8000 -c 1 -b 16 "$out/greeting.wav" norm -3
# The tone: 400 ms of 1 kHz, faded in and out so it does not click.
sox -n -r 8000 -c 1 -b 16 "$out/beep.wav" synth 0.4 sine 1000 fade 0.02 0.4 0.02 vol 0.5
soxi "$out/greeting.wav" "$out/beep.wav" | grep -E "Input File|Duration"
