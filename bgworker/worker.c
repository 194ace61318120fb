/*
 * worker.c — the pg_infer background worker.
 *
 * One process, started by the postmaster (see register_worker() in
 * ext/pg_infer.c).  It connects to pg_infer.database, finds the device it
 * will compute on and publishes what it found in shared memory, then serves
 * (serving_loop.c), sleeping on its latch when there is nothing to do.  CUDA is only ever loaded here, never in the
 * postmaster or a backend: pg_infer_cuda.so is dlopen'ed by the probe.
 *
 * Exits: on SIGTERM it leaves the loop and exits with status 1, so that a
 * worker stopped with pg_terminate_backend() is started again after
 * bgw_restart_time (at server shutdown the postmaster restarts nothing).
 * It exits the same way when a model's device is lost (a CUDA error that
 * ruins the context): the new process gets a fresh device and reloads the
 * models.
 */
#include "../ext/pg_infer.h"

#include <dlfcn.h>
#include <string.h>

#include "../engine/device.h"
#include "serving_loop.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

static void
set_state(PgInferWorkerState state)
{
	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	pg_infer_shared->worker_state = state;
	LWLockRelease(pg_infer_shared->lock);
}

/* Runs on every exit path, FATAL included: nothing stays published for a
 * process that is gone. */
static void
clear_published_worker(int code, Datum arg)
{
	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	pg_infer_shared->worker_pid = 0;
	pg_infer_shared->worker_latch = NULL;
	pg_infer_shared->worker_state = PGI_WORKER_STOPPED;
	LWLockRelease(pg_infer_shared->lock);
}

/*
 * The CUDA backend is installed next to pg_infer.so.  Asking the dynamic
 * loader where this library came from finds it even when the extension was
 * loaded from a staging directory (the tests do that); the fallback is
 * PostgreSQL's package library directory.
 */
static void
find_cuda_library(char *path, size_t size)
{
	Dl_info		info;

	if (dladdr((void *) pg_infer_worker_main, &info) != 0 && info.dli_fname != NULL &&
		strrchr(info.dli_fname, '/') != NULL)
	{
		int			dir_length = (int) (strrchr(info.dli_fname, '/') - info.dli_fname);

		snprintf(path, size, "%.*s/pg_infer_cuda.so", dir_length, info.dli_fname);
	}
	else
		snprintf(path, size, "%s/pg_infer_cuda.so", pkglib_path);
}

/*
 * Find the device and publish the report.  pg_infer.device = cpu means the
 * CUDA library is not even loaded; "auto" and "cuda:N" probe it.  Probing
 * never fails: no library, no driver or no GPU all mean the CPU, and the
 * report says why.
 */
/* The device this worker computes on: its entry of pg_infer.devices, else
 * pg_infer.device. */
static const char *
device_setting(void)
{
	return pg_infer_shared->device_label[0] != '\0' ? pg_infer_shared->device_label : pg_infer_device;
}

/*
 * pg_infer.devices = auto planned a worker per GPU node seen; one whose GPU
 * CUDA does not report exits for good (exit code 0: not restarted), except
 * the first, which computes on the CPU as pg_infer.device = auto would.
 */
static void
settle_auto_device(const pgi_device_report *report)
{
	char		names[PGI_MAX_WORKERS][PGI_DEVICE_NAME_LENGTH];
	bool		is_auto;
	int			index = pg_infer_shared->worker_index;

	(void) pg_infer_devices_plan(names, &is_auto);
	if (!is_auto || (strcmp(report->kind, "cuda") == 0 && index < report->cuda_device_count))
		return;
	if (index == 0)
	{
		LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
		strlcpy(pg_infer_shared->device_label, "cpu", sizeof(pg_infer_shared->device_label));
		LWLockRelease(pg_infer_shared->lock);
		return;
	}
	ereport(LOG,
			(errmsg("pg_infer worker for %s exits: CUDA reports %d devices",
					pg_infer_shared->device_label, report->cuda_device_count)));
	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	pg_infer_shared->retired = true;
	LWLockRelease(pg_infer_shared->lock);
	proc_exit(0);
}

static void
probe_devices(void)
{
	char		cuda_path[MAXPGPATH];
	bool		cpu_only;
	pgi_device_report report;

	set_state(PGI_WORKER_PROBING);

	cpu_only = strcmp(device_setting(), "cpu") == 0 || pg_infer_device_is_cpu(pg_infer_shared->device_label);
	find_cuda_library(cuda_path, sizeof(cuda_path));
	pgi_device_probe(cpu_only ? NULL : cuda_path, &report);
	settle_auto_device(&report);

	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	pg_infer_shared->probed = true;
	strlcpy(pg_infer_shared->device_setting, device_setting(),
			sizeof(pg_infer_shared->device_setting));
	strlcpy(pg_infer_shared->device_kind, report.kind, sizeof(pg_infer_shared->device_kind));
	strlcpy(pg_infer_shared->device_name, report.name, sizeof(pg_infer_shared->device_name));
	pg_infer_shared->device_memory_total = (int64) report.memory_total;
	strlcpy(pg_infer_shared->cuda_library_path, cuda_path,
			sizeof(pg_infer_shared->cuda_library_path));
	pg_infer_shared->cuda_library_loaded = report.cuda_library_loaded;
	if (cpu_only && pg_infer_shared->device_label[0] != '\0')
		strlcpy(pg_infer_shared->cuda_library_error, "the worker's device is a CPU",
				sizeof(pg_infer_shared->cuda_library_error));
	else if (cpu_only)
		strlcpy(pg_infer_shared->cuda_library_error, "pg_infer.device is cpu",
				sizeof(pg_infer_shared->cuda_library_error));
	else
		strlcpy(pg_infer_shared->cuda_library_error, report.cuda_library_error,
				sizeof(pg_infer_shared->cuda_library_error));
	pg_infer_shared->cuda_error_code = report.cuda_error_code;
	strlcpy(pg_infer_shared->cuda_error_text, report.cuda_error_text,
			sizeof(pg_infer_shared->cuda_error_text));
	pg_infer_shared->cuda_device_count = report.cuda_device_count;
	pg_infer_shared->cuda_driver_version = report.cuda_driver_version;
	pg_infer_shared->worker_state = PGI_WORKER_READY;
	LWLockRelease(pg_infer_shared->lock);

	if (strcmp(report.kind, "cuda") == 0)
		ereport(LOG,
				(errmsg("pg_infer worker computes on %s (%s)", report.name, device_setting())));
	else
		ereport(LOG,
				(errmsg("pg_infer worker computes on the CPU: %s (%s)", report.name, device_setting()),
				 cpu_only ? (pg_infer_shared->device_label[0] != '\0' ?
							 errdetail("Its device of pg_infer.devices is %s.", device_setting()) :
							 errdetail("pg_infer.device is cpu."))
				 : report.cuda_library_loaded
				 ? errdetail("CUDA is not usable: error %d: %s.",
							 report.cuda_error_code, report.cuda_error_text)
				 : errdetail("The CUDA library %s was not loaded: %s.",
							 cuda_path, report.cuda_library_error)));
}

/* A SIGHUP: read the configuration again and probe again when the device
 * setting changed. */
static void
reload_configuration(void)
{
	char		previous_device[64];

	ConfigReloadPending = false;
	strlcpy(previous_device, pg_infer_device, sizeof(previous_device));
	ProcessConfigFile(PGC_SIGHUP);
	/* a worker of pg_infer.devices keeps its device */
	if (pg_infer_shared->device_label[0] == '\0' && strcmp(previous_device, pg_infer_device) != 0)
		probe_devices();
	serving_reload();
}

void
pg_infer_worker_main(Datum main_arg)
{
	long		sleep_ms = 0;
	int			index = DatumGetInt32(main_arg);

	/* from here on this process's slot and queue are "the" worker's */
	if (index < 0 || index >= pg_infer_n_workers)
		elog(FATAL, "pg_infer worker %d of %d", index, pg_infer_n_workers);
	pg_infer_shared = &pg_infer_workers[index];
	pg_infer_queue = &pg_infer_queues[index];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(pg_infer_shared->lock, LW_EXCLUSIVE);
	pg_infer_shared->worker_pid = MyProcPid;
	pg_infer_shared->worker_latch = MyLatch;
	pg_infer_shared->worker_state = PGI_WORKER_STARTING;
	pg_infer_shared->started_at = GetCurrentTimestamp();
	pg_infer_shared->worker_starts++;
	LWLockRelease(pg_infer_shared->lock);
	before_shmem_exit(clear_published_worker, (Datum) 0);

	BackgroundWorkerInitializeConnection(pg_infer_database, NULL, 0);
	pgstat_report_appname(PG_INFER_WORKER_TYPE);

	probe_devices();
	serving_start();

	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ShutdownRequestPending)
			break;
		if (ConfigReloadPending)
			reload_configuration();

		/* serve what arrived; it says how long the loop may sleep */
		sleep_ms = serving_iterate();
		if (serving_restart_reason() != NULL)
		{
			/* exit code 1: the postmaster starts a new worker after
			 * bgw_restart_time, which loads the models again */
			ereport(LOG,
					(errmsg("pg_infer worker restarting: %s", serving_restart_reason())));
			break;
		}
	}

	set_state(PGI_WORKER_STOPPING);
	serving_shutdown();
	ereport(LOG, (errmsg("pg_infer worker shutting down")));
	proc_exit(1);
}
