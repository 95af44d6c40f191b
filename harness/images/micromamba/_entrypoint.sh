#!/bin/sh
# STAND-IN for micromamba-docker's entrypoint (ml-container-template tests): activates the
# base prefix by putting its bin/ first on PATH, then runs the command.
export CONDA_PREFIX="$MAMBA_ROOT_PREFIX"
export PATH="$MAMBA_ROOT_PREFIX/bin:$PATH"
exec "$@"
