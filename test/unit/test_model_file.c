/*
 * test_model_file.c — a loaded model against what happens to its file, and
 * files that ask for too much.
 *
 *   - A model whose file is truncated or rewritten in place after the load
 *     still generates the same text (gguf.h: the file is read into private
 *     memory); the generation runs in a child process so that a SIGBUS is a
 *     failed check, not a dead test.
 *   - A header asking for 2^24 layers, or a context past PGI_MAX_CONTEXT, is
 *     refused before the weights are read (the child runs under a 1 GiB
 *     address-space limit: allocating for the header would fail it).
 *   - A file of 8 GiB of zeros is refused at once; a valid model with a
 *     large tail is read in pieces, every byte given to the caller's
 *     callback in order, and a callback returning false cancels the load.
 *   - A FIFO is refused at once, never waited on (a child under alarm()).
 *
 * Expected text: the reference of test/serving_tests.sh (the CLI's greedy
 * continuation of "Once upon a time", 32 tokens, on stories260K).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "gguf.h"
#include "pgi_memory.h"
#include "test_support.h"
#include "unit.h"

#define EXPECTED ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw"

static char scratch[4096];

static const char *
source_model(void)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/stories260K.gguf", unit_models_dir());
    return path;
}

static char *
scratch_file(const char *name)
{
    static char paths[8][4200];
    static int next;
    char *p = paths[next++ % 8];

    snprintf(p, sizeof(paths[0]), "%s/%s", scratch, name);
    return p;
}

static bool
write_file(const char *path, const void *bytes, size_t size)
{
    FILE *f = fopen(path, "wb");
    bool ok;

    if (f == NULL)
        return false;
    ok = fwrite(bytes, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

/* The source model's bytes (pgi_alloc'd). */
static uint8_t *
model_bytes(size_t *size)
{
    return (uint8_t *) test_read_file(source_model(), size);
}

/* Overwrite the u32 value of a UINT32 key in a GGUF image; false if absent. */
static bool
patch_u32(uint8_t *bytes, size_t size, const char *key, uint32_t value)
{
    size_t n = strlen(key);

    for (size_t i = 8; i + n + 8 <= size; i++)
    {
        uint64_t length = 0;

        if (memcmp(bytes + i, key, n) != 0)
            continue;
        for (int b = 0; b < 8; b++)
            length |= (uint64_t) bytes[i - 8 + b] << (8 * b);
        if (length != n || bytes[i + n] != 4 /* GGUF UINT32 */)
            continue;
        for (int b = 0; b < 4; b++)
            bytes[i + n + 4 + b] = (uint8_t) (value >> (8 * b));
        return true;
    }
    return false;
}

static pgi_engine *
open_engine(const char *path, pgi_error *err)
{
    pgi_engine_options o;
    pgi_engine *e = NULL;

    pgi_engine_options_default(&o);
    o.model_path = path;
    o.device = "cpu";
    o.n_threads = 1;
    if (pgi_engine_open(&o, &e, err) != PGI_OK)
        return NULL;
    return e;
}

/* Greedy continuation of "Once upon a time", 32 tokens, into text. */
static bool
continue_story(pgi_engine *e, test_text *text)
{
    const char *prompt = "Once upon a time";
    int32_t *tokens = NULL;
    int n = 0;
    pgi_sampling_params p;
    pgi_generation r;
    pgi_error err;
    bool ok;

    memset(text, 0, sizeof(*text));
    if (pgi_tokenize_alloc(pgi_engine_tokenizer(e), prompt, strlen(prompt), true, false, &tokens,
                           &n, &err) != PGI_OK)
        return false;
    pgi_sampling_params_default(&p);
    p.max_tokens = 32;
    ok = pgi_engine_generate(e, tokens, n, &p, test_collect_text, text, &r, &err) == PGI_OK;
    if (ok)
        pgi_free(r.tokens);
    pgi_free(tokens);
    return ok;
}

/*
 * Runs continue_story in a child; the text it made into out.  Returns the
 * child's wait status (0: exited normally, 0).
 */
static int
story_in_child(pgi_engine *e, test_text *out)
{
    int fds[2];
    pid_t pid;
    int status = -1;
    ssize_t n;

    memset(out, 0, sizeof(*out));
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    pid = fork();
    if (pid == 0)
    {
        test_text text;

        close(fds[0]);
        alarm(60);
        if (!continue_story(e, &text))
            _exit(2);
        if (write(fds[1], text.text, text.length) != (ssize_t) text.length)
            _exit(3);
        _exit(0);
    }
    close(fds[1]);
    while ((n = read(fds[0], out->text + out->length, sizeof(out->text) - 1 - out->length)) > 0)
        out->length += (size_t) n;
    out->text[out->length] = '\0';
    close(fds[0]);
    waitpid(pid, &status, 0);
    return status;
}

static void
describe_status(int status, char *buf, size_t size)
{
    if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d", WTERMSIG(status));
    else if (WIFEXITED(status))
        snprintf(buf, size, "exit %d", WEXITSTATUS(status));
    else
        snprintf(buf, size, "status %d", status);
}

/* ------------------------------------------------------------ item 1 */

static void
test_file_changed_after_load(void)
{
    const char *path = scratch_file("mutable.gguf");
    size_t size;
    uint8_t *bytes = model_bytes(&size);
    pgi_engine *e;
    pgi_error err = {0};
    test_text text;
    char how[64];
    int status;

    CHECK(bytes != NULL && write_file(path, bytes, size), "a copy of stories260K to load");
    e = open_engine(path, &err);
    CHECK(e != NULL, "the copy loads (%s)", err.message);
    if (e == NULL)
    {
        pgi_free(bytes);
        return;
    }
    status = story_in_child(e, &text);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0 && strcmp(text.text, EXPECTED) == 0,
          "before the file changes: the reference text (%s, \"%s\")", how, text.text);

    CHECK(truncate(path, 200000) == 0, "the file is truncated to 200000 bytes");
    status = story_in_child(e, &text);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0, "generating after the truncation ends normally (%s)", how);
    CHECK(strcmp(text.text, EXPECTED) == 0, "and gives the same text (\"%s\")", text.text);

    /* another file copied over it in place (same inode): zeros of the
     * original size, as `cp other.gguf m.gguf` rewrites the bytes */
    memset(bytes, 0, size);
    CHECK(write_file(path, bytes, size), "the file is rewritten in place with other bytes");
    status = story_in_child(e, &text);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0 && strcmp(text.text, EXPECTED) == 0,
          "generating after the rewrite: the same text (%s, \"%s\")", how, text.text);

    CHECK(unlink(path) == 0, "the file is removed");
    status = story_in_child(e, &text);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0 && strcmp(text.text, EXPECTED) == 0,
          "generating after the removal: the same text (%s)", how);
    pgi_engine_close(e);
    pgi_free(bytes);
}

/* ------------------------------------------------------------ item 3 */

/* pgi_engine_open in a child under a 1 GiB address-space limit; the status
 * and message it got.  Returns the child's wait status. */
static int
open_in_child(const char *path, int context_length, pgi_status *got, char *message,
              size_t message_size, double *ms)
{
    int fds[2];
    pid_t pid;
    int status = -1;
    struct timespec t0, t1;
    struct {
        pgi_status status;
        char message[512];
    } reply;

    memset(&reply, 0, sizeof(reply));
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid = fork();
    if (pid == 0)
    {
        struct rlimit limit = {(rlim_t) 1 << 30, (rlim_t) 1 << 30};
        pgi_engine_options o;
        pgi_engine *e = NULL;
        pgi_error err = {0};

        close(fds[0]);
        alarm(60);
        setrlimit(RLIMIT_AS, &limit);
        pgi_engine_options_default(&o);
        o.model_path = path;
        o.device = "cpu";
        o.n_threads = 1;
        o.context_length = context_length;
        reply.status = pgi_engine_open(&o, &e, &err);
        snprintf(reply.message, sizeof(reply.message), "%s", err.message);
        pgi_engine_close(e);
        if (write(fds[1], &reply, sizeof(reply)) != (ssize_t) sizeof(reply))
            _exit(3);
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], &reply, sizeof(reply)) != (ssize_t) sizeof(reply))
        reply.status = PGI_ERR_INTERNAL;
    close(fds[0]);
    waitpid(pid, &status, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
    *got = reply.status;
    snprintf(message, message_size, "%s", reply.message);
    return status;
}

static void
test_hostile_headers(void)
{
    size_t size;
    uint8_t *bytes = model_bytes(&size);
    const char *blocks = scratch_file("blocks.gguf");
    const char *context = scratch_file("context.gguf");
    pgi_status st;
    char message[512], how[64];
    double ms;
    int status;

    CHECK(bytes != NULL && patch_u32(bytes, size, "llama.block_count", 1u << 24) &&
              write_file(blocks, bytes, size),
          "a 1.2 MB file declaring 2^24 layers");
    status = open_in_child(blocks, 0, &st, message, sizeof(message), &ms);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0 && st == PGI_ERR_FORMAT && strstr(message, "block_count") != NULL,
          "2^24 layers: refused as malformed, naming block_count (%s, %s: %s)", how,
          pgi_status_name(st), message);
    CHECK(ms < 5000, "2^24 layers: refused in %.0f ms", ms);
    pgi_free(bytes);

    bytes = model_bytes(&size);
    CHECK(bytes != NULL && patch_u32(bytes, size, "llama.context_length", 1u << 22) &&
              write_file(context, bytes, size),
          "a file declaring a context of 2^22 tokens");
    status = open_in_child(context, 0, &st, message, sizeof(message), &ms);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0 && st == PGI_ERR_UNSUPPORTED && strstr(message, "limit") != NULL,
          "a 2^22-token context: refused with the limit (%s, %s: %s)", how,
          pgi_status_name(st), message);
    status = open_in_child(context, 256, &st, message, sizeof(message), &ms);
    CHECK(status == 0 && st == PGI_OK, "the same file with a context length of 256 loads (%s)",
          message);
    status = open_in_child(context, PGI_MAX_CONTEXT + 1, &st, message, sizeof(message), &ms);
    CHECK(status == 0 && st == PGI_ERR_INVALID_ARGUMENT,
          "a context length over the limit is refused (%s)", message);
    pgi_free(bytes);
}

typedef struct chunk_log {
    uint64_t bytes;
    uint64_t hash;         /* FNV-1a of every byte given, in order */
    int calls;
    int cancel_after;      /* > 0: return false on that call */
    const char *append_to; /* non-NULL: append a byte to this file on the first call */
} chunk_log;

static uint64_t
fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
    {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool
log_chunk(void *context, const void *bytes, size_t length)
{
    chunk_log *log = context;

    log->calls++;
    if (log->append_to != NULL && log->calls == 1)
    {
        FILE *f = fopen(log->append_to, "ab");

        if (f != NULL)
        {
            fputc(0, f);
            fclose(f);
        }
    }
    log->bytes += length;
    log->hash = fnv(log->hash, bytes, length);
    return log->cancel_after == 0 || log->calls < log->cancel_after;
}

static void
test_big_files(void)
{
    const char *zeros = scratch_file("zeros.gguf");
    const char *tail = scratch_file("tail.gguf");
    size_t size;
    uint8_t *bytes = model_bytes(&size);
    pgi_status st;
    char message[512], how[64];
    double ms;
    int status, fd;
    pgi_engine_options o;
    pgi_engine *e = NULL;
    pgi_error err = {0};
    chunk_log log;
    uint64_t expected_hash;
    const uint64_t tail_size = (uint64_t) 64 << 20;

    fd = open(zeros, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    CHECK(fd >= 0 && ftruncate(fd, (off_t) 8 << 30) == 0, "an 8 GiB sparse file of zeros");
    if (fd >= 0)
        close(fd);
    status = open_in_child(zeros, 0, &st, message, sizeof(message), &ms);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0 && st == PGI_ERR_FORMAT && strstr(message, "not a GGUF file") != NULL,
          "8 GiB of zeros: not a GGUF file (%s, %s)", how, message);
    CHECK(ms < 2000, "8 GiB of zeros: refused in %.0f ms, without reading it", ms);
    unlink(zeros);

    /* stories260K followed by 64 MiB of zeros: valid, and read to the end */
    CHECK(bytes != NULL && write_file(tail, bytes, size) && truncate(tail, (off_t) tail_size) == 0,
          "stories260K with a tail of zeros to 64 MiB");
    expected_hash = fnv(1469598103934665603ull, bytes, size);
    {
        static uint8_t zero_block[1 << 16];

        for (uint64_t left = tail_size - size; left > 0;)
        {
            size_t n = left < sizeof(zero_block) ? (size_t) left : sizeof(zero_block);

            expected_hash = fnv(expected_hash, zero_block, n);
            left -= n;
        }
    }
    pgi_engine_options_default(&o);
    o.model_path = tail;
    o.device = "cpu";
    o.n_threads = 1;
    o.on_load_chunk = log_chunk;
    o.on_load_context = &log;
    memset(&log, 0, sizeof(log));
    log.hash = 1469598103934665603ull;
    st = pgi_engine_open(&o, &e, &err);
    CHECK(st == PGI_OK, "the file loads (%s)", err.message);
    CHECK(log.bytes == tail_size && log.hash == expected_hash && log.calls > 4,
          "the callback saw every byte, in order (%llu bytes in %d pieces)",
          (unsigned long long) log.bytes, log.calls);
    pgi_engine_close(e);
    e = NULL;

    memset(&log, 0, sizeof(log));
    log.cancel_after = 2;
    st = pgi_engine_open(&o, &e, &err);
    CHECK(st == PGI_ERR_CANCELLED && e == NULL && log.calls == 2 && log.bytes < tail_size / 4,
          "a callback returning false cancels the load (%s; %d calls, %llu bytes)",
          pgi_status_name(st), log.calls, (unsigned long long) log.bytes);

    /* a file written while it loads is refused, not half-loaded */
    memset(&log, 0, sizeof(log));
    log.append_to = tail;
    st = pgi_engine_open(&o, &e, &err);
    CHECK(st == PGI_ERR_IO && e == NULL && strstr(err.message, "changed while it was being loaded"),
          "a file written to while it loads is refused (%s: %s)", pgi_status_name(st), err.message);
    CHECK(truncate(tail, (off_t) tail_size) == 0, "the file, back to its size");

    /* the caller's descriptor: the file it opened is the file loaded, even
     * when the path names something else by then */
    fd = open(tail, O_RDONLY);
    CHECK(fd >= 0, "the file, opened");
    CHECK(unlink(tail) == 0 && write_file(tail, "not a model", 11), "its path now names another file");
    pgi_engine_options_default(&o);
    o.model_path = tail;
    o.device = "cpu";
    o.n_threads = 1;
    o.have_model_fd = true;
    o.model_fd = fd;
    st = pgi_engine_open(&o, &e, &err);
    CHECK(st == PGI_OK, "loading through the descriptor reads the file it opened (%s)", err.message);
    pgi_engine_close(e);
    if (fd >= 0)
        close(fd);
    unlink(tail);
    pgi_free(bytes);
}

/* ------------------------------------------------------------ item 4 */

static void
test_fifo(void)
{
    const char *fifo = scratch_file("fifo.gguf");
    pgi_status st;
    char message[512], how[64];
    double ms;
    int status;

    CHECK(mkfifo(fifo, 0600) == 0, "a FIFO named like a model");
    status = open_in_child(fifo, 0, &st, message, sizeof(message), &ms);
    describe_status(status, how, sizeof(how));
    CHECK(status == 0 && st == PGI_ERR_IO && strstr(message, "not a regular file") != NULL,
          "loading a FIFO: refused as not a regular file, not waited on (%s, %s)", how, message);
    CHECK(ms < 5000, "loading a FIFO: refused in %.0f ms", ms);

    {
        pid_t pid;

        fflush(stdout);
        pid = fork();
        if (pid == 0)
        {
            gguf_file *f = NULL;
            pgi_error err = {0};

            alarm(5);
            _exit(gguf_open_metadata(fifo, &f, &err) == PGI_ERR_IO &&
                          strstr(err.message, "not a regular file") != NULL ? 0 : 1);
        }
        waitpid(pid, &status, 0);
        describe_status(status, how, sizeof(how));
        CHECK(status == 0, "reading a FIFO's metadata (the backends' tokenizer): refused at once (%s)",
              how);
    }
    unlink(fifo);
}

int
main(void)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(scratch, sizeof(scratch), "%s/pgi_model_file.XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(scratch) == NULL)
    {
        perror("mkdtemp");
        return 1;
    }
    test_file_changed_after_load();
    test_hostile_headers();
    test_big_files();
    test_fifo();
    rmdir(scratch);
    return unit_done();
}
