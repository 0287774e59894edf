@echo off
rem Task Scheduler: every minute, run up to 10 ready jobs and the queue's housekeeping (see docs/cron.md).
rem A run that went well prints nothing: instance\cron.log holds only real problems, rotated at 1 MB.
call "%~dp0rotate-log.bat" "%~dp0..\instance\cron.log"
call "%~dp0sipup.bat" queue process --limit 10 >> "%~dp0..\instance\cron.log" 2>&1
