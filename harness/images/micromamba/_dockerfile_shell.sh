#!/bin/bash
# STAND-IN for micromamba-docker's shell for RUN steps (ml-container-template tests): activates
# the prefix only when MAMBA_DOCKERFILE_ACTIVATE=1, then runs the step with bash.
set -ef -o pipefail
if [[ "${MAMBA_DOCKERFILE_ACTIVATE:-}" == "1" ]]; then
    export CONDA_PREFIX="$MAMBA_ROOT_PREFIX" PATH="$MAMBA_ROOT_PREFIX/bin:$PATH"
fi
exec bash -o pipefail -c "$@"
