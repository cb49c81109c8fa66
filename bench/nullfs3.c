/*
 * nullfs3: a filesystem that keeps everything in memory and does as little as it can per
 * request, served over libfuse 3's low-level API the way ext4j's default transport is. What a
 * workload costs on it is what the FUSE transport alone costs (the kernel, the round trips,
 * libfuse), the floor under ext4j's figures. A benchmark tool (see bench/floor), not a product.
 *
 *   gcc -O2 -Wall -o nullfs3 bench/nullfs3.c $(pkg-config --cflags --libs fuse3)
 *   nullfs3 [-f] [-d] [-o OPTIONS] MNT      (umount MNT ends it; its files are gone then)
 *
 * It asks the kernel for what ext4j's Ext4LowLevel.init asks (READDIRPLUS for every listing,
 * EXPORT_SUPPORT, ASYNC_READ, AUTO_INVAL_DATA, 1 MiB writes and readahead, time_gran 1; no
 * writeback cache, no splice, no locks), answers OPENDIR with ENOSYS, names every inode by its
 * number (root = 1), gives entries and attributes 60 s and sets keep_cache at open. Like an ext4j
 * mount by root it has no default_permissions: only root's processes reach it and it answers
 * ACCESS itself; "-o default_permissions" makes it what ext4j is then (the kernel checks
 * permissions and POSIX ACLs, POSIX_ACL + DONT_MASK, the umask applied here).
 *
 * Requests are served by libfuse's fuse_session_loop_mt (ext4j runs its own loop of a few Java
 * threads over the same session calls, FuseLoop). One mutex guards everything: a request holds
 * it for a table lookup or a memcpy, far less than its round trip through the kernel.
 *
 * Not done, as no benchmark needs it: default ACLs are not inherited, FORGET is ignored (an
 * inode goes with its last name and last open file), inode numbers are never reused, no ioctl,
 * lseek, copy_file_range or fallocate (EOPNOTSUPP).
 */
#define FUSE_USE_VERSION 314
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096          /* file data is kept in pages of this size, allocated when written */
#define MAX_IO (1 << 20)   /* max_write and max_readahead, as ext4j's MAX_IO */
#define TIMEOUT 60.0       /* entry and attribute timeouts, as ext4j's on a writable image */
#define FIRST_COOKIE 3     /* readdir offsets: 1 after ".", 2 after "..", then one per name */

struct xattr {
    struct xattr *next;
    char *name;
    char *value;
    size_t size;
};

/* One name in a directory: in the global name hash and in its directory's list. */
struct dentry {
    struct dentry *hnext;
    uint64_t parent, ino;
    size_t slot;           /* index in the parent's ents[] */
    char name[];
};

struct inode {
    uint64_t ino;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    dev_t rdev;
    nlink_t nlink;
    off_t size;
    struct timespec atime, mtime, ctime;
    unsigned opens;        /* open files: an unlinked file lives until the last is released */
    struct xattr *xattrs;
    char **pages;          /* regular file: npages slots, NULL reads as zeros */
    size_t npages, allocated;
    char *target;          /* symlink */
    /* directory: its names in cookie order; a removed name leaves a NULL until compaction */
    struct dentry **ents;
    uint64_t *cookies;
    size_t nents, cap, live;
    uint64_t next_cookie, parent;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct inode **inodes;          /* by inode number; numbers are never reused */
static uint64_t ninodes, inodes_cap;
static struct dentry **htab;           /* names by (parent, name), chained */
static size_t hsize, hcount;
static int kernel_checks;              /* mounted with default_permissions */

/* ---- small helpers ---- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        perror("nullfs3");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) {
        perror("nullfs3");
        abort();
    }
    return p;
}

static struct timespec now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t;
}

static struct inode *get(fuse_ino_t ino)
{
    return ino < ninodes ? inodes[ino] : NULL;
}

static int is_dir(const struct inode *i)
{
    return S_ISDIR(i->mode);
}

/* A thread's buffer for replies (reads, listings, xattr values). */
static char *scratch(size_t n)
{
    static _Thread_local char *buf;
    static _Thread_local size_t cap;
    if (n > cap) {
        buf = xrealloc(buf, n);
        cap = n;
    }
    return buf;
}

/* ---- inodes ---- */

static struct inode *new_inode(fuse_req_t req, mode_t mode)
{
    if (ninodes == inodes_cap) {
        inodes_cap = inodes_cap ? inodes_cap * 2 : 1024;
        inodes = xrealloc(inodes, inodes_cap * sizeof *inodes);
    }
    struct inode *i = calloc(1, sizeof *i);
    if (!i)
        abort();
    i->ino = ninodes;
    inodes[ninodes++] = i;
    i->mode = mode;
    i->nlink = 1;
    if (req) {
        const struct fuse_ctx *c = fuse_req_ctx(req);
        i->uid = c->uid;
        i->gid = c->gid;
    }
    i->atime = i->mtime = i->ctime = now();
    if (S_ISDIR(mode)) {
        i->nlink = 2;
        i->size = PAGE;
        i->next_cookie = FIRST_COOKIE;
    }
    return i;
}

/* Frees the inode once no name and no open file refers to it (FORGET is not waited for). */
static void put_if_unused(struct inode *i)
{
    if (i->nlink > 0 || i->opens > 0)
        return;
    inodes[i->ino] = NULL;
    for (size_t p = 0; p < i->npages; p++)
        free(i->pages[p]);
    free(i->pages);
    free(i->target);
    free(i->ents);
    free(i->cookies);
    for (struct xattr *x = i->xattrs, *n; x; x = n) {
        n = x->next;
        free(x->name);
        free(x->value);
        free(x);
    }
    free(i);
}

/* Sets the size: pages past it are freed, and the rest of the last page zeroed, so that
 * whatever lies beyond the size reads as zeros when the file grows again. */
static void resize(struct inode *i, off_t size)
{
    size_t keep = (size + PAGE - 1) / PAGE;
    for (size_t p = keep; p < i->npages; p++) {
        i->allocated -= i->pages[p] != NULL;
        free(i->pages[p]);
        i->pages[p] = NULL;
    }
    if (keep < i->npages)
        i->npages = keep;
    if (size % PAGE && keep > 0 && keep <= i->npages && i->pages[keep - 1])
        memset(i->pages[keep - 1] + size % PAGE, 0, PAGE - size % PAGE);
    i->size = size;
}

static void fill_stat(const struct inode *i, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = i->ino;
    st->st_mode = i->mode;
    st->st_nlink = i->nlink;
    st->st_uid = i->uid;
    st->st_gid = i->gid;
    st->st_rdev = i->rdev;
    st->st_size = i->size;
    st->st_blksize = PAGE;
    st->st_blocks = (is_dir(i) ? 1 : i->allocated) * (PAGE / 512);
    st->st_atim = i->atime;
    st->st_mtim = i->mtime;
    st->st_ctim = i->ctime;
}

static void fill_entry(const struct inode *i, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof *e);
    e->ino = i->ino;
    fill_stat(i, &e->attr);
    e->attr_timeout = TIMEOUT;
    e->entry_timeout = TIMEOUT;
}

/* ---- names: a hash over (parent, name) for lookups, each directory's list for readdir ---- */

static size_t hash(uint64_t parent, const char *name)
{
    uint64_t h = 1469598103934665603ULL ^ parent; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 29));
}

static struct dentry **find_slot(uint64_t parent, const char *name)
{
    if (!hsize)
        return NULL;
    struct dentry **d = &htab[hash(parent, name) & (hsize - 1)];
    while (*d && ((*d)->parent != parent || strcmp((*d)->name, name) != 0))
        d = &(*d)->hnext;
    return *d ? d : NULL;
}

static struct dentry *find(uint64_t parent, const char *name)
{
    struct dentry **d = find_slot(parent, name);
    return d ? *d : NULL;
}

static void hash_grow(void)
{
    size_t n = hsize ? hsize * 2 : 4096;
    struct dentry **t = calloc(n, sizeof *t);
    if (!t)
        abort();
    for (size_t b = 0; b < hsize; b++) {
        for (struct dentry *d = htab[b], *next; d; d = next) {
            next = d->hnext;
            struct dentry **head = &t[hash(d->parent, d->name) & (n - 1)];
            d->hnext = *head;
            *head = d;
        }
    }
    free(htab);
    htab = t;
    hsize = n;
}

/* Adds NAME -> ino to directory DIR with the next cookie. */
static void add_name(struct inode *dir, const char *name, uint64_t ino)
{
    size_t len = strlen(name);
    struct dentry *d = xmalloc(sizeof *d + len + 1);
    memcpy(d->name, name, len + 1);
    d->parent = dir->ino;
    d->ino = ino;
    if (hcount >= hsize)
        hash_grow();
    struct dentry **head = &htab[hash(dir->ino, name) & (hsize - 1)];
    d->hnext = *head;
    *head = d;
    hcount++;
    if (dir->nents == dir->cap) {
        dir->cap = dir->cap ? dir->cap * 2 : 16;
        dir->ents = xrealloc(dir->ents, dir->cap * sizeof *dir->ents);
        dir->cookies = xrealloc(dir->cookies, dir->cap * sizeof *dir->cookies);
    }
    d->slot = dir->nents;
    dir->ents[dir->nents] = d;
    dir->cookies[dir->nents++] = dir->next_cookie++;
    dir->live++;
    dir->mtime = dir->ctime = now();
}

/* Removes NAME from DIR (it must be there); the inode's link count is the caller's. */
static void remove_name(struct inode *dir, const char *name)
{
    struct dentry **slot = find_slot(dir->ino, name);
    struct dentry *d = *slot;
    *slot = d->hnext;
    hcount--;
    dir->ents[d->slot] = NULL;
    dir->live--;
    free(d);
    dir->mtime = dir->ctime = now();
    if (dir->nents - dir->live > 64 && dir->nents - dir->live > dir->live) {
        /* compact: the cookies move with their names, so a listing in progress goes on where it was */
        size_t n = 0;
        for (size_t k = 0; k < dir->nents; k++) {
            if (dir->ents[k]) {
                dir->ents[n] = dir->ents[k];
                dir->cookies[n] = dir->cookies[k];
                dir->ents[n]->slot = n;
                n++;
            }
        }
        dir->nents = n;
    }
}

/* Drops one link of I: a directory loses its "." and its parent's ".." too. */
static void unlink_inode(struct inode *parent, struct inode *i)
{
    if (is_dir(i)) {
        i->nlink = 0;
        parent->nlink--;
    } else {
        i->nlink--;
    }
    i->ctime = now();
    put_if_unused(i);
}

/* ---- replies under the lock ---- */

static void reply_entry_locked(fuse_req_t req, struct inode *i)
{
    struct fuse_entry_param e;
    fill_entry(i, &e);
    pthread_mutex_unlock(&lock);
    fuse_reply_entry(req, &e);
}

static void reply_err_locked(fuse_req_t req, int err)
{
    pthread_mutex_unlock(&lock);
    fuse_reply_err(req, err);
}

/* ---- requests ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    unsigned add = FUSE_CAP_IOCTL_DIR | FUSE_CAP_EXPORT_SUPPORT | FUSE_CAP_CACHE_SYMLINKS | FUSE_CAP_ASYNC_READ
                   | FUSE_CAP_READDIRPLUS | FUSE_CAP_PARALLEL_DIROPS | FUSE_CAP_AUTO_INVAL_DATA;
    if (kernel_checks)
        add |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
    conn->want |= add & conn->capable;
    /* READDIRPLUS on every listing; O_TRUNC as a SETATTR; no splice, writeback cache or locks */
    conn->want &= ~(FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE
                    | FUSE_CAP_SPLICE_MOVE | FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
    conn->max_write = MAX_IO;
    conn->max_readahead = MAX_IO;
    conn->time_gran = 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    pthread_mutex_lock(&lock);
    struct inode *dir = get(parent), *i = NULL;
    if (!dir || !is_dir(dir))
        return reply_err_locked(req, dir ? ENOTDIR : ENOENT);
    if (strcmp(name, ".") == 0) {
        i = dir; /* EXPORT_SUPPORT: the kernel asks "." of a node id it forgot */
    } else if (strcmp(name, "..") == 0) {
        i = get(dir->parent);
    } else {
        struct dentry *d = find(parent, name);
        if (!d) {
            /* a negative entry the kernel may keep for 60 s, as ext4j answers */
            pthread_mutex_unlock(&lock);
            struct fuse_entry_param e = {.entry_timeout = TIMEOUT};
            fuse_reply_entry(req, &e);
            return;
        }
        i = get(d->ino);
    }
    if (!i)
        return reply_err_locked(req, ENOENT);
    reply_entry_locked(req, i);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    struct stat st;
    fill_stat(i, &st);
    pthread_mutex_unlock(&lock);
    fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int set, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    struct timespec t = now();
    if (set & FUSE_SET_ATTR_SIZE) {
        if (!S_ISREG(i->mode))
            return reply_err_locked(req, is_dir(i) ? EISDIR : EINVAL);
        resize(i, attr->st_size);
        i->mtime = t;
    }
    if (set & FUSE_SET_ATTR_MODE)
        i->mode = (i->mode & S_IFMT) | (attr->st_mode & 07777);
    if (set & FUSE_SET_ATTR_UID)
        i->uid = attr->st_uid;
    if (set & FUSE_SET_ATTR_GID)
        i->gid = attr->st_gid;
    if (set & FUSE_SET_ATTR_ATIME_NOW)
        i->atime = t;
    else if (set & FUSE_SET_ATTR_ATIME)
        i->atime = attr->st_atim;
    if (set & FUSE_SET_ATTR_MTIME_NOW)
        i->mtime = t;
    else if (set & FUSE_SET_ATTR_MTIME)
        i->mtime = attr->st_mtim;
    i->ctime = (set & FUSE_SET_ATTR_CTIME) ? attr->st_ctim : t;
    struct stat st;
    fill_stat(i, &st);
    pthread_mutex_unlock(&lock);
    fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i || !S_ISLNK(i->mode))
        return reply_err_locked(req, i ? EINVAL : ENOENT);
    char *target = strcpy(scratch(strlen(i->target) + 1), i->target);
    pthread_mutex_unlock(&lock);
    fuse_reply_readlink(req, target);
}

/* Checks that NAME may be made in PARENT: 0, or the errno. */
static int can_make(struct inode *parent, const char *name)
{
    if (!parent)
        return ENOENT;
    if (!is_dir(parent))
        return ENOTDIR;
    if (strlen(name) > 255)
        return ENAMETOOLONG;
    return find(parent->ino, name) ? EEXIST : 0;
}

/* Makes a new inode named NAME in PARENT, the umask applied (the kernel left it to us with
 * DONT_MASK; otherwise it applied it already, and applying it again changes nothing). */
static struct inode *make(fuse_req_t req, struct inode *parent, const char *name, mode_t mode)
{
    mode_t type = mode & S_IFMT;
    struct inode *i = new_inode(req, type | (mode & 07777 & ~fuse_req_ctx(req)->umask));
    if (is_dir(i)) {
        i->parent = parent->ino;
        parent->nlink++;
    }
    add_name(parent, name, i->ino);
    return i;
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    pthread_mutex_lock(&lock);
    struct inode *dir = get(parent);
    int err = can_make(dir, name);
    if (err)
        return reply_err_locked(req, err);
    struct inode *i = make(req, dir, name, mode);
    i->rdev = rdev;
    reply_entry_locked(req, i);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    pthread_mutex_lock(&lock);
    struct inode *dir = get(parent);
    int err = can_make(dir, name);
    if (err)
        return reply_err_locked(req, err);
    reply_entry_locked(req, make(req, dir, name, S_IFDIR | (mode & 07777)));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    pthread_mutex_lock(&lock);
    struct inode *dir = get(parent);
    int err = can_make(dir, name);
    if (err)
        return reply_err_locked(req, err);
    struct inode *i = new_inode(req, S_IFLNK | 0777);
    i->target = strdup(link);
    i->size = strlen(link);
    add_name(dir, name, i->ino);
    reply_entry_locked(req, i);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino), *dir = get(newparent);
    int err = i ? can_make(dir, newname) : ENOENT;
    if (!err && is_dir(i))
        err = EPERM;
    if (err)
        return reply_err_locked(req, err);
    add_name(dir, newname, i->ino);
    i->nlink++;
    i->ctime = now();
    reply_entry_locked(req, i);
}

/* UNLINK and RMDIR: WANT_DIR says which. */
static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, int want_dir)
{
    pthread_mutex_lock(&lock);
    struct inode *dir = get(parent);
    struct dentry *d = dir ? find(parent, name) : NULL;
    struct inode *i = d ? get(d->ino) : NULL;
    if (!i)
        return reply_err_locked(req, ENOENT);
    if (want_dir && !is_dir(i))
        return reply_err_locked(req, ENOTDIR);
    if (!want_dir && is_dir(i))
        return reply_err_locked(req, EISDIR);
    if (want_dir && i->live > 0)
        return reply_err_locked(req, ENOTEMPTY);
    remove_name(dir, name);
    unlink_inode(dir, i);
    reply_err_locked(req, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_entry(req, parent, name, 0);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    remove_entry(req, parent, name, 1);
}

/* RENAME with flags 0 or RENAME_NOREPLACE; RENAME_EXCHANGE and RENAME_WHITEOUT are EINVAL.
 * The kernel has checked that a directory is not moved under itself. */
static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
                      unsigned flags)
{
    if (flags & ~RENAME_NOREPLACE)
        return (void)fuse_reply_err(req, EINVAL);
    pthread_mutex_lock(&lock);
    struct inode *from = get(parent), *to = get(newparent);
    struct dentry *d = from ? find(parent, name) : NULL;
    struct inode *i = d ? get(d->ino) : NULL;
    if (!i || !to)
        return reply_err_locked(req, ENOENT);
    if (!is_dir(to))
        return reply_err_locked(req, ENOTDIR);
    if (strlen(newname) > 255)
        return reply_err_locked(req, ENAMETOOLONG);
    struct dentry *old = find(newparent, newname);
    if (old) {
        struct inode *victim = get(old->ino);
        if (flags & RENAME_NOREPLACE)
            return reply_err_locked(req, EEXIST);
        if (victim == i)
            return reply_err_locked(req, 0); /* two names of one inode: nothing to do */
        if (is_dir(i) && !is_dir(victim))
            return reply_err_locked(req, ENOTDIR);
        if (!is_dir(i) && is_dir(victim))
            return reply_err_locked(req, EISDIR);
        if (is_dir(victim) && victim->live > 0)
            return reply_err_locked(req, ENOTEMPTY);
        remove_name(to, newname);
        unlink_inode(to, victim);
    }
    remove_name(from, name);
    add_name(to, newname, i->ino);
    if (is_dir(i) && from != to) {
        from->nlink--;
        to->nlink++;
        i->parent = to->ino;
    }
    i->ctime = now();
    reply_err_locked(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    i->opens++;
    pthread_mutex_unlock(&lock);
    fi->fh = ino;
    fi->keep_cache = 1; /* every change comes through this kernel: what it cached is still true */
    fuse_reply_open(req, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&lock);
    struct inode *dir = get(parent);
    int err = can_make(dir, name);
    if (err)
        return reply_err_locked(req, err);
    struct inode *i = make(req, dir, name, S_IFREG | (mode & 07777));
    i->opens++;
    struct fuse_entry_param e;
    fill_entry(i, &e);
    pthread_mutex_unlock(&lock);
    fi->fh = e.ino;
    fuse_reply_create(req, &e, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (i && i->opens > 0) {
        i->opens--;
        put_if_unused(i);
    }
    reply_err_locked(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    size_t n = off >= i->size ? 0 : (size_t)(i->size - off) < size ? (size_t)(i->size - off) : size;
    char *buf = scratch(n);
    for (size_t done = 0; done < n;) {
        size_t p = (off + done) / PAGE, in = (off + done) % PAGE;
        size_t len = PAGE - in < n - done ? PAGE - in : n - done;
        if (p < i->npages && i->pages[p])
            memcpy(buf + done, i->pages[p] + in, len);
        else
            memset(buf + done, 0, len); /* a page never written */
        done += len;
    }
    pthread_mutex_unlock(&lock);
    fuse_reply_buf(req, buf, n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    size_t last = (off + size + PAGE - 1) / PAGE;
    if (last > i->npages) {
        i->pages = xrealloc(i->pages, last * sizeof *i->pages);
        memset(i->pages + i->npages, 0, (last - i->npages) * sizeof *i->pages);
        i->npages = last;
    }
    for (size_t done = 0; done < size;) {
        size_t p = (off + done) / PAGE, in = (off + done) % PAGE;
        size_t len = PAGE - in < size - done ? PAGE - in : size - done;
        if (!i->pages[p]) {
            if (!(i->pages[p] = calloc(1, PAGE)))
                abort();
            i->allocated++;
        }
        memcpy(i->pages[p] + in, buf + done, len);
        done += len;
    }
    if (off + (off_t)size > i->size)
        i->size = off + size;
    i->mtime = i->ctime = now();
    pthread_mutex_unlock(&lock);
    fuse_reply_write(req, size);
}

/* FSYNC and FSYNCDIR: nothing is kept anywhere but here. */
static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);
}

/* OPENDIR: ENOSYS, as ext4j answers (but for strictatime): the kernel then sends no OPENDIR
 * and RELEASEDIR at all and keeps listings in its cache until the directory changes. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, ENOSYS);
}

/* Adds one entry to a listing: the attributes only for READDIRPLUS and not for "." and "..",
 * which the kernel does not take as lookups (ext4j lists them with node id 0). */
static size_t add_dirent(fuse_req_t req, char *at, size_t room, const char *name, const struct inode *i,
                         off_t next, int plus, int dots)
{
    struct fuse_entry_param e;
    if (plus && !dots) {
        fill_entry(i, &e);
    } else {
        memset(&e, 0, sizeof e);
        e.attr.st_ino = i->ino;
        e.attr.st_mode = i->mode & S_IFMT;
    }
    return plus ? fuse_add_direntry_plus(req, at, room, name, &e, next)
                : fuse_add_direntry(req, at, room, name, &e.attr, next);
}

/* READDIR and READDIRPLUS: the names after cookie OFF while they fit in SIZE bytes. Each
 * entry's offset is its own cookie, so the next request continues after the last one sent. */
static void list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
    pthread_mutex_lock(&lock);
    struct inode *dir = get(ino);
    if (!dir || !is_dir(dir))
        return reply_err_locked(req, dir ? ENOTDIR : ENOENT);
    char *buf = scratch(size);
    size_t used = 0, len;
    struct inode *up = get(dir->parent);
    if (off < 1) {
        len = add_dirent(req, buf + used, size - used, ".", dir, 1, plus, 1);
        if (len > size - used)
            goto full;
        used += len;
    }
    if (off < 2) {
        len = add_dirent(req, buf + used, size - used, "..", up ? up : dir, 2, plus, 1);
        if (len > size - used)
            goto full;
        used += len;
    }
    /* the first cookie after OFF: cookies[] is ascending, holes and all */
    size_t lo = 0, hi = dir->nents;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (dir->cookies[mid] <= (uint64_t)off)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo; k < dir->nents; k++) {
        struct dentry *d = dir->ents[k];
        struct inode *i = d ? get(d->ino) : NULL;
        if (!i)
            continue;
        len = add_dirent(req, buf + used, size - used, d->name, i, dir->cookies[k], plus, 0);
        if (len > size - used)
            break;
        used += len;
    }
full:
    pthread_mutex_unlock(&lock);
    fuse_reply_buf(req, buf, used);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    list(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    list(req, ino, size, off, 1);
}

/* STATFS: large made-up numbers, 4 KiB blocks. */
static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs s = {
        .f_bsize = PAGE, .f_frsize = PAGE, .f_namemax = 255,
        .f_blocks = 1ULL << 30, .f_bfree = 1ULL << 29, .f_bavail = 1ULL << 29,
        .f_files = 1ULL << 32, .f_ffree = 1ULL << 31, .f_favail = 1ULL << 31,
    };
    fuse_reply_statfs(req, &s);
}

static struct xattr **find_xattr(struct inode *i, const char *name)
{
    struct xattr **x = &i->xattrs;
    while (*x && strcmp((*x)->name, name) != 0)
        x = &(*x)->next;
    return x;
}

/* The xattr size protocol: SIZE 0 asks for the length, a shorter buffer than DATA is ERANGE.
 * DATA is the thread's scratch buffer or the lock-held inode's; either way it is copied out
 * before the lock is let go. */
static void reply_xattr_locked(fuse_req_t req, const char *data, size_t n, size_t size)
{
    if (size == 0) {
        pthread_mutex_unlock(&lock);
        fuse_reply_xattr(req, n);
    } else if (size < n) {
        reply_err_locked(req, ERANGE);
    } else {
        char *buf = scratch(n);
        memmove(buf, data, n);
        pthread_mutex_unlock(&lock);
        fuse_reply_buf(req, buf, n);
    }
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    struct xattr **x = find_xattr(i, name);
    if (*x && (flags & XATTR_CREATE))
        return reply_err_locked(req, EEXIST);
    if (!*x && (flags & XATTR_REPLACE))
        return reply_err_locked(req, ENODATA);
    if (!*x) {
        *x = calloc(1, sizeof **x);
        if (!*x)
            abort();
        (*x)->name = strdup(name);
    }
    (*x)->value = xrealloc((*x)->value, size);
    memcpy((*x)->value, value, size);
    (*x)->size = size;
    i->ctime = now();
    reply_err_locked(req, 0);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    struct xattr *x = *find_xattr(i, name);
    if (!x)
        return reply_err_locked(req, ENODATA);
    reply_xattr_locked(req, x->value, x->size, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    size_t n = 0;
    for (struct xattr *x = i->xattrs; x; x = x->next)
        n += strlen(x->name) + 1;
    char *names = scratch(n), *at = names;
    for (struct xattr *x = i->xattrs; x; x = x->next)
        at = stpcpy(at, x->name) + 1;
    reply_xattr_locked(req, names, n, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    struct xattr **x = find_xattr(i, name), *gone = *x;
    if (!gone)
        return reply_err_locked(req, ENODATA);
    *x = gone->next;
    free(gone->name);
    free(gone->value);
    free(gone);
    i->ctime = now();
    reply_err_locked(req, 0);
}

/* ACCESS, asked only without default_permissions, where every caller is root: everything but
 * executing a file with no exec bit, as ext4j answers. */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
    pthread_mutex_lock(&lock);
    struct inode *i = get(ino);
    if (!i)
        return reply_err_locked(req, ENOENT);
    int denied = (mask & X_OK) && !is_dir(i) && !(i->mode & 0111);
    reply_err_locked(req, denied ? EACCES : 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi)
{
    fuse_reply_err(req, EOPNOTSUPP);
}

/* FORGET: ignored; an inode goes with its last name and last open file. */
static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    fuse_reply_none(req);
}

/* No flush (ENOSYS once, then the kernel stops sending it, as with ext4j), no locks (the kernel
 * keeps them), no ioctl, lseek or copy_file_range (the kernel falls back to its own). */
static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .fsyncdir = op_fsync,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .create = op_create,
    .fallocate = op_fallocate,
};

/* The kernel reads ahead 128 KiB on a FUSE mount whatever max_readahead says; root raises the
 * mount's read_ahead_kb to 1 MiB, as ext4j does. The device comes from mountinfo: a stat of MNT
 * would wait for the INIT nobody serves yet. */
static void raise_readahead(const char *mnt)
{
    char *real = realpath(mnt, NULL), line[4096], dev[32] = "", found[32] = "", point[4096];
    FILE *f = fopen("/proc/self/mountinfo", "r");
    while (real && f && fgets(line, sizeof line, f)) {
        /* "ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ...": the last mount on MNT is ours */
        if (sscanf(line, "%*s %*s %31s %*s %4095s", dev, point) == 2 && strcmp(point, real) == 0)
            strcpy(found, dev);
    }
    if (f)
        fclose(f);
    free(real);
    if (!found[0])
        return;
    snprintf(line, sizeof line, "/sys/class/bdi/%s/read_ahead_kb", found);
    if ((f = fopen(line, "w"))) {
        fprintf(f, "%d\n", MAX_IO / 1024);
        fclose(f);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: nullfs3 [-f] [-d] [-o OPTIONS] MNT\n"
                    "  an in-memory filesystem over libfuse 3 that does nothing else (see bench/floor)\n"
                    "  -f foreground, -d libfuse's debug output, -o default_permissions as ext4j's option\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int foreground = 0, debug = 0;
    char opts[4096] = "fsname=nullfs3,subtype=nullfs3"; /* nosuid,nodev: FUSE's default, and ext4j's */
    const char *mnt = NULL;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-f") == 0) {
            foreground = 1;
        } else if (strcmp(argv[a], "-d") == 0) {
            debug = foreground = 1;
        } else if (strcmp(argv[a], "-o") == 0 && a + 1 < argc) {
            const char *o = argv[++a];
            if (strstr(o, "default_permissions"))
                kernel_checks = 1;
            if (strlen(opts) + strlen(o) + 2 > sizeof opts)
                usage();
            strcat(strcat(opts, ","), o);
        } else if (argv[a][0] == '-' || mnt) {
            usage();
        } else {
            mnt = argv[a];
        }
    }
    if (!mnt)
        usage();

    /* inode 0 is never used; the root is 1 (FUSE_ROOT_ID), owned by whoever mounts */
    inodes_cap = 1024;
    inodes = calloc(inodes_cap, sizeof *inodes);
    ninodes = 1;
    struct inode *root = new_inode(NULL, S_IFDIR | 0755);
    root->uid = getuid();
    root->gid = getgid();
    root->parent = root->ino;

    char *args_v[] = {argv[0], "-o", opts, "-d", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, args_v);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se)
        return 1;
    if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, mnt) != 0) {
        fuse_session_destroy(se);
        return 1;
    }
    raise_readahead(mnt);
    fuse_daemonize(foreground);
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    int res = fuse_session_loop_mt(se, cfg); /* until umount MNT */
    fuse_loop_cfg_destroy(cfg);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return res < 0 ? 1 : 0;
}
