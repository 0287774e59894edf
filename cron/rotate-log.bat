@echo off
rem Rotate a log file once it passes 1 MB: FILE.1 to FILE.5 are kept, the oldest dropped.
rem Usage: call cron\rotate-log.bat "C:\sipup\instance\cron.log"
if not exist "%~1" exit /b 0
if %~z1 LSS 1048576 exit /b 0
if exist "%~1.5" del /q "%~1.5"
if exist "%~1.4" move /y "%~1.4" "%~1.5" >nul
if exist "%~1.3" move /y "%~1.3" "%~1.4" >nul
if exist "%~1.2" move /y "%~1.2" "%~1.3" >nul
if exist "%~1.1" move /y "%~1.1" "%~1.2" >nul
move /y "%~1" "%~1.1" >nul
exit /b 0
