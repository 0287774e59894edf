@echo off
rem Task Scheduler: every minute, run up to 10 ready jobs and the queue's housekeeping (see README).
call "%~dp0sipup.bat" queue process --limit 10 >> "%~dp0..\instance\cron.log" 2>&1
