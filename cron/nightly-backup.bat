@echo off
rem Task Scheduler: nightly, queue a verified backup with high priority; the next queue run makes it.
call "%~dp0sipup.bat" queue enqueue nightly_backup --priority high >> "%~dp0..\instance\cron.log" 2>&1
