@echo off
rem Run a tool (nox, invoke) from the project's pinned tool venv, creating it on first use: the Windows
rem twin of scripts/run. From an "x64 Native Tools Command Prompt for VS 2022":
rem   scripts\run.cmd nox -s build_cuda      scripts\run.cmd nox -s tests      scripts\run.cmd invoke doctor
rem The venv is made with the py launcher (py -3, or set LLAMA_WHEELS_PY=-3.12); it is set up again when
rem pyproject.toml or ci\requirements-tools.txt is newer than it. Arguments go through unchanged (%*).
setlocal
for %%I in ("%~dp0..") do set "ROOT=%%~fI"
set "VENV=%ROOT%\.tools"
if not defined LLAMA_WHEELS_PY set "LLAMA_WHEELS_PY=-3"
py %LLAMA_WHEELS_PY% -c "import os,sys;r=sys.argv[1];s=os.path.join(r,'.tools','.installed');sys.exit(0 if os.path.exists(s) and all(os.path.getmtime(os.path.join(r,f))<=os.path.getmtime(s) for f in ('pyproject.toml',os.path.join('ci','requirements-tools.txt'))) else 1)" "%ROOT%"
if errorlevel 1 (
  echo scripts\run.cmd: setting up %VENV% 1>&2
  py %LLAMA_WHEELS_PY% -m venv "%VENV%" || exit /b 1
  "%VENV%\Scripts\python.exe" -m pip install --quiet --disable-pip-version-check -r "%ROOT%\ci\requirements-tools.txt" -e "%ROOT%" || exit /b 1
  type nul > "%VENV%\.installed"
)
if "%~1"=="" (
  echo usage: scripts\run.cmd nox^|invoke ARGS... 1>&2
  exit /b 2
)
cd /d "%ROOT%"
rem nox and invoke both run as modules, so the tool's name is simply the module: python -m nox -s ...
"%VENV%\Scripts\python.exe" -m %*
exit /b %ERRORLEVEL%
