# Sourced by the scripts: where jielong keeps its per-user cache and how cargo finds libtorch.
# JIELONG_CACHE holds the torch venv and the cargo target dir, reused across clones.
export JIELONG_CACHE="${JIELONG_CACHE:-$HOME/.cache/jielong}"
export JIELONG_VENV="$JIELONG_CACHE/venv"
export JIELONG_PYTHON="$JIELONG_VENV/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$JIELONG_CACHE/target}"
# torch-sys reads libtorch from the venv's PyTorch (it runs `python` when VIRTUAL_ENV is set).
export LIBTORCH_USE_PYTORCH=1
export VIRTUAL_ENV="$JIELONG_VENV"
export PATH="$JIELONG_VENV/bin:$PATH"
