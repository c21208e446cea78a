/*
 * ucarp: pyucarp's `ucarp` command as a native executable (installed as /usr/sbin/ucarp).
 *
 * The Python interpreter is embedded (libpython), so the daemon stays this process:
 * /proc/PID/exe is this file and its name is "ucarp". `start-stop-daemon --exec
 * /usr/sbin/ucarp`, `pidof ucarp`, `ps -C ucarp` and `killall ucarp` therefore find a
 * running pyucarp daemon exactly as they find the C ucarp. A console script cannot do
 * that: its executable is the interpreter.
 *
 * The interpreter starts as a system daemon's should, as `python3 -I` does: PYTHON*
 * variables are ignored, there is no user site directory, and neither the current
 * directory nor the program's directory is on the import path. The environment itself is
 * left as it came: the up and down scripts get it unchanged (the C locale is not coerced
 * to C.UTF-8; under it Python uses UTF-8 for file names and arguments).
 *
 * The command line is handed over untouched: sys.argv is argv, argv[0] included, and
 * /proc/PID/cmdline stays what the caller gave, so ps shows `ucarp -i eth0 ...` and
 * pyucarp can scrub a -p password from it. The exit status is ucarp_main()'s.
 *
 * Compile-time settings (see Makefile):
 *   PYUCARP_PYTHON  the interpreter whose libpython is linked in; it becomes
 *                   sys.executable and locates the standard library
 *   PYUCARP_SITE    optional: a directory put first on the import path, so that the
 *                   packaged pyucarp and its dependencies win over other copies
 *                   (pip installs in /usr/local)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef PYUCARP_PYTHON
#error "PYUCARP_PYTHON must name the interpreter (e.g. -DPYUCARP_PYTHON='\"/usr/bin/python3.11\"')"
#endif

static const char run_ucarp[] =
    "import sys\n"
#ifdef PYUCARP_SITE
    "sys.path.insert(0, '" PYUCARP_SITE "')\n"
#endif
    "from pyucarp.cli import ucarp_main\n"
    "sys.exit(ucarp_main())\n";

static void check(PyStatus status, PyConfig *config)
{
    if (PyStatus_Exception(status)) {
        if (config != NULL)
            PyConfig_Clear(config);
        Py_ExitStatusException(status); /* prints "Fatal Python error: ..." and exits */
    }
}

int main(int argc, char **argv)
{
    PyPreConfig preconfig;
    PyConfig config;

    PyPreConfig_InitPythonConfig(&preconfig);
    preconfig.isolated = 1;
    preconfig.use_environment = 0;
    preconfig.parse_argv = 0;      /* ucarp's options are not the interpreter's */
    preconfig.coerce_c_locale = 0; /* no LC_CTYPE=C.UTF-8 exported to the scripts */
    preconfig.coerce_c_locale_warn = 0;
    check(Py_PreInitialize(&preconfig), NULL);

    PyConfig_InitPythonConfig(&config);
    config.isolated = 1;
    config.use_environment = 0;
    config.user_site_directory = 0;
#if PY_VERSION_HEX >= 0x030B0000
    config.safe_path = 1;
#endif
    config.parse_argv = 0;
    config.pathconfig_warnings = 0;
    check(PyConfig_SetBytesArgv(&config, argc, argv), &config);
    check(PyConfig_SetBytesString(&config, &config.executable, PYUCARP_PYTHON), &config);
    check(PyConfig_SetBytesString(&config, &config.run_command, run_ucarp), &config);
    check(Py_InitializeFromConfig(&config), &config);
    PyConfig_Clear(&config);
    return Py_RunMain();
}
