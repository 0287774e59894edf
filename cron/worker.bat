@echo off
rem Task Scheduler, at startup: run `flask queue worker` and start it again 10 seconds after it stops for any
rem reason (a crash, a lost database); output goes to instance\worker.log, rotated at 1 MB (see docs/cron.md).
rem Ending the task in Task Scheduler stops both this loop and the command.
:again
call "%~dp0rotate-log.bat" "%~dp0..\instance\worker.log"
echo %date% %time% starting flask queue worker>> "%~dp0..\instance\worker.log"
call "%~dp0sipup.bat" queue worker >> "%~dp0..\instance\worker.log" 2>&1
echo %date% %time% flask queue worker stopped with exit code %errorlevel%; starting again in 10 s>> "%~dp0..\instance\worker.log"
rem ping waits without a console (timeout.exe refuses to run in a scheduled task).
ping -n 11 127.0.0.1 >nul
goto again
