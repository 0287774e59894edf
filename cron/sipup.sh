#!/bin/sh
# Run one sipup command from cron with the project's virtualenv, e.g. `cron/sipup.sh seed --help`.
# Cron starts with an empty environment: put SIPUP_* settings in instance/sipup.cfg.
cd "$(dirname "$0")/.." || exit 1
exec ./.venv/bin/flask "$@"
