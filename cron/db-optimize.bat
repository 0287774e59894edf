@echo off
rem Task Scheduler: weekly database optimisation with a report in instance\.
call "%~dp0rotate-log.bat" "%~dp0..\instance\cron.log"
call "%~dp0sipup.bat" db optimize --report "%~dp0..\instance\optimize-report.txt" >> "%~dp0..\instance\cron.log" 2>&1
