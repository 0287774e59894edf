@echo off
rem Run one sipup command from Windows Task Scheduler with the project's virtualenv.
rem Settings live in instance\sipup.cfg, since scheduled tasks start with a bare environment.
cd /d "%~dp0.."
".venv\Scripts\flask.exe" %*
