#!/usr/bin/env bash
# Authoring aid (not needed to use or test spurnotes): turn a jupytext percent script into a notebook in nbs/.
# usage: tools/nbify.sh SRC.py nbs/NN_name.ipynb
set -e
jupytext --to ipynb --set-kernel python3 -o "$2" "$1"
