/*
 * devices.c — pg_infer.devices: which serving workers the server runs, one
 * per device, and what each is called.
 *
 * The setting (restart to change) is one of
 *
 *   ''          (the default) one worker on pg_infer.device, as before
 *   'auto'      one worker per NVIDIA GPU the server sees (/dev/nvidiaN,
 *               at most as many as CUDA_VISIBLE_DEVICES names when it is
 *               set), named cuda:0, cuda:1, ...; with none, one worker that
 *               computes where pg_infer.device = auto would
 *   a list      comma-separated entries cuda:N, cpu:N or cpu, one worker
 *               each, at most PGI_MAX_WORKERS.  A bare cpu is named cpu:K,
 *               K counting the CPU entries before it, so 'cpu,cpu' is
 *               cpu:0 and cpu:1.  Two entries of one name are refused.
 *
 * A worker's name is what usage.device, device_activity.device,
 * pg_infer_models.device and load_model(device => ...) say.  The CPU
 * threads (pg_infer.threads, 0: one per core) are shared out between the
 * CPU workers.
 */
#include "pg_infer.h"

#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "utils/guc.h"

char	   *pg_infer_devices = NULL;

/* The parsed list: names[i] is worker i's device name. */
typedef struct DeviceList
{
	int			n;
	bool		is_auto;
	char		names[PGI_MAX_WORKERS][PGI_DEVICE_NAME_LENGTH];
} DeviceList;

static bool
all_digits(const char *s, int max_digits)
{
	int			n = (int) strlen(s);

	return n > 0 && n <= max_digits && (int) strspn(s, "0123456789") == n;
}

/* Parse `value` into *list; false with *why set when it is not valid. */
static bool
parse_devices(const char *value, DeviceList *list, const char **why)
{
	char		buffer[1024];
	char	   *entry;
	char	   *save = NULL;
	int			cpu_entries = 0;

	memset(list, 0, sizeof(*list));
	if (value == NULL)
		return true;
	while (isspace((unsigned char) *value))
		value++;
	if (*value == '\0')
		return true;
	if (strlen(value) >= sizeof(buffer))
	{
		*why = "The list is too long.";
		return false;
	}
	strlcpy(buffer, value, sizeof(buffer));
	for (entry = strtok_r(buffer, ",", &save); entry != NULL; entry = strtok_r(NULL, ",", &save))
	{
		char	   *end;
		char		name[PGI_DEVICE_NAME_LENGTH];

		while (isspace((unsigned char) *entry))
			entry++;
		end = entry + strlen(entry);
		while (end > entry && isspace((unsigned char) end[-1]))
			*--end = '\0';
		if (strcmp(entry, "auto") == 0)
		{
			if (list->n > 0 || strtok_r(NULL, ",", &save) != NULL)
			{
				*why = "\"auto\" stands alone.";
				return false;
			}
			list->is_auto = true;
			return true;
		}
		if (strcmp(entry, "cpu") == 0)
			snprintf(name, sizeof(name), "cpu:%d", cpu_entries);
		else if ((strncmp(entry, "cpu:", 4) == 0 && all_digits(entry + 4, 3)) ||
				 (strncmp(entry, "cuda:", 5) == 0 && all_digits(entry + 5, 3)))
			strlcpy(name, entry, sizeof(name));
		else
		{
			*why = "Each entry is cuda:N, cpu:N or cpu (or the whole setting is \"auto\" or empty).";
			return false;
		}
		if (strncmp(name, "cpu", 3) == 0)
			cpu_entries++;
		if (list->n == PGI_MAX_WORKERS)
		{
			*why = "At most 8 devices.";
			return false;
		}
		for (int i = 0; i < list->n; i++)
			if (strcmp(list->names[i], name) == 0)
			{
				*why = "A device is named twice.";
				return false;
			}
		strlcpy(list->names[list->n++], name, PGI_DEVICE_NAME_LENGTH);
	}
	if (list->n == 0)
	{
		*why = "The list names no device.";
		return false;
	}
	return true;
}

bool
pg_infer_devices_check(char **newval, void **extra, GucSource source)
{
	DeviceList	list;
	const char *why = NULL;

	if (parse_devices(*newval, &list, &why))
		return true;
	GUC_check_errdetail("%s", why);
	return false;
}

/* NVIDIA GPUs the server sees, without loading CUDA (the postmaster never
 * does): the /dev/nvidiaN nodes, no more than CUDA_VISIBLE_DEVICES names. */
static int
count_nvidia_devices(void)
{
	DIR		   *dir = opendir("/dev");
	struct dirent *de;
	int			n = 0;
	const char *visible = getenv("CUDA_VISIBLE_DEVICES");

	if (dir == NULL)
		return 0;
	while ((de = readdir(dir)) != NULL)
		if (strncmp(de->d_name, "nvidia", 6) == 0 && all_digits(de->d_name + 6, 3))
			n++;
	closedir(dir);
	if (visible != NULL)
	{
		int			named = visible[0] != '\0' ? 1 : 0;

		for (const char *p = visible; *p != '\0'; p++)
			if (*p == ',')
				named++;
		n = Min(n, named);
	}
	return Min(n, PGI_MAX_WORKERS);
}

int
pg_infer_devices_plan(char names[][PGI_DEVICE_NAME_LENGTH], bool *is_auto)
{
	DeviceList	list;
	const char *why = NULL;

	if (!parse_devices(pg_infer_devices, &list, &why))
		elog(ERROR, "pg_infer.devices is invalid: %s", why);	/* the check refused it */
	*is_auto = list.is_auto;
	if (list.is_auto)
	{
		int			gpus = count_nvidia_devices();

		for (int i = 0; i < Max(gpus, 1); i++)
			snprintf(names[i], PGI_DEVICE_NAME_LENGTH, "cuda:%d", i);
		return Max(gpus, 1);
	}
	if (list.n == 0)
	{
		names[0][0] = '\0';		/* one worker on pg_infer.device */
		return 1;
	}
	for (int i = 0; i < list.n; i++)
		strlcpy(names[i], list.names[i], PGI_DEVICE_NAME_LENGTH);
	return list.n;
}

bool
pg_infer_device_is_cpu(const char *name)
{
	return strncmp(name, "cpu", 3) == 0;
}

/*
 * What the engine is told: "cpu" for every CPU worker (cpu:N only tells
 * them apart), cuda:N as named.
 */
const char *
pg_infer_device_engine_name(const char *name)
{
	return pg_infer_device_is_cpu(name) ? "cpu" : name;
}

/*
 * CPU threads of one worker: pg_infer.threads (0: one per core) shared
 * evenly between the CPU workers, at least one each; a worker on a GPU, or
 * the only CPU worker, gets the setting as it is.
 */
int
pg_infer_worker_threads(const PgInferShared *worker)
{
	int			cpu_workers = 0;
	int			total = pg_infer_threads;

	if (worker->device_label[0] == '\0' || !pg_infer_device_is_cpu(worker->device_label))
		return pg_infer_threads;
	for (int i = 0; i < pg_infer_n_workers; i++)
		if (pg_infer_workers[i].device_label[0] != '\0' &&
			pg_infer_device_is_cpu(pg_infer_workers[i].device_label))
			cpu_workers++;
	if (cpu_workers <= 1)
		return pg_infer_threads;
	if (total == 0)
	{
		long		cores = sysconf(_SC_NPROCESSORS_ONLN);

		total = cores > 0 ? (int) cores : 1;
	}
	return Max(total / cpu_workers, 1);
}

int
pg_infer_worker_by_device(const char *name)
{
	for (int i = 0; i < pg_infer_n_workers; i++)
		if (pg_infer_workers[i].device_label[0] != '\0' &&
			strcmp(pg_infer_workers[i].device_label, name) == 0)
			return i;
	return -1;
}

bool
pg_infer_devices_set(void)
{
	return pg_infer_workers != NULL && pg_infer_workers[0].device_label[0] != '\0';
}
