#!/bin/sh
# Run one sipup command with the project's virtualenv, e.g. `cron/sipup.sh seed --help`.
# Cron starts with an empty environment: put SIPUP_* settings in instance/sipup.cfg.
# `cron/sipup.sh --log FILE COMMAND...` appends the command's output to FILE (relative to the project
# folder), first rotating it once it passes 1 MB: FILE.1 to FILE.5 are kept, the oldest dropped.
cd "$(dirname "$0")/.." || exit 1
if [ "$1" = "--log" ]; then
    log=$2
    shift 2
    if [ -f "$log" ] && [ "$(wc -c < "$log")" -gt 1048576 ]; then
        for n in 4 3 2 1; do
            if [ -f "$log.$n" ]; then mv -f "$log.$n" "$log.$((n + 1))"; fi
        done
        mv -f "$log" "$log.1"
    fi
    exec ./.venv/bin/flask "$@" >> "$log" 2>&1
fi
exec ./.venv/bin/flask "$@"
